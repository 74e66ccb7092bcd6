package main

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

func (a *app) reloadCommand() *cobra.Command {
	var (
		addr      string
		adminAddr string
		timeout   time.Duration
		client    clientOptions
	)
	cmd := &cobra.Command{
		Use:   "reload RANKER",
		Short: "Reload a ranker's model in a running server",
		Long: `reload asks a running larder serve to load the ranker's model file again,
check it, and swap it in while requests keep being served. It prints the
model's version before and after.

A model that cannot be read, does not match the ranker's inputs and output,
or fails a trial run is refused: the server keeps serving with the old model,
and reload exits with the reason.

reload calls the server's AdminService at --admin-addr. Without it, it calls
--addr; without either, server.admin_listen of the project file, or
server.listen when admin_listen is not set.

A server that checks its callers (server.auth) needs the admin role: a
token with --token-file, --token or LARDER_TOKEN, or a client certificate
with --cert-file and --key-file. When the address comes from the project
file and server.tls_cert_file is set, reload speaks TLS and trusts that
certificate; with an address on the command line, pass --tls and --ca-file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// An address on the command line wins over the project file:
			// it may name another server than the file's.
			addr = cmp.Or(adminAddr, addr)
			var from *larder.Project // the project addr comes from, if it does
			if addr == "" {
				p, err := a.loadConfig()
				if err != nil {
					return fmt.Errorf("%w; or name the server with --admin-addr", err)
				}
				addr, from = cmp.Or(p.Server.AdminListen, p.Server.Listen), p
			}
			conn, err := client.dial(addr, from)
			if err != nil {
				return fmt.Errorf("reload: server %s: %w", addr, err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := larderv1.NewAdminServiceClient(conn).ReloadModel(ctx, &larderv1.ReloadModelRequest{Ranker: args[0]})
			if err != nil {
				st := status.Convert(err)
				if st.Code() == codes.Unimplemented {
					return fmt.Errorf("reload %s at %s: %s: %s; the server may serve the AdminService on an address of its own (server.admin_listen): name it with --admin-addr", args[0], addr, st.Code(), st.Message())
				}
				return fmt.Errorf("reload %s at %s: %s: %s%s", args[0], addr, st.Code(), st.Message(), client.hint(st, from))
			}
			note := ""
			if resp.GetOldVersion() == resp.GetNewVersion() {
				note = " (unchanged)"
			}
			fmt.Fprintf(a.stdout, "%s: %s -> %s%s\n", resp.GetRanker(), resp.GetOldVersion(), resp.GetNewVersion(), note)
			return nil
		},
	}
	cmd.Flags().StringVar(&adminAddr, "admin-addr", "", "the address of the server's AdminService, host:port (default: --addr, else server.admin_listen of the project file, else server.listen)")
	cmd.Flags().StringVar(&addr, "addr", "", "the server's gRPC address, host:port, for a server that serves the AdminService there (default: server.listen of the project file)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the server")
	client.addFlags(cmd)
	return cmd
}
