package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/larder-dev/larder"
)

// listenAddr is an address a command listens on, with the flag and the
// project file's setting it comes from, for messages that say what to fix.
type listenAddr struct {
	addr    string
	flag    string // such as --listen
	setting string // such as server.listen; "" when only the flag sets it
	// fromFlag is true when the address was given with the flag.
	fromFlag bool
	example  string // such as 127.0.0.1:50051
}

// listen checks l's address and listens on it. Its error names the flag or
// the setting the address came from and says what to write instead.
func (a *app) listen(l listenAddr) (net.Listener, error) {
	where := l.flag + " " + l.addr
	if !l.fromFlag {
		where = fmt.Sprintf("%s %s in %s", l.setting, l.addr, a.configPath)
	}
	if problem := checkListen(l.addr); problem != "" {
		if l.fromFlag {
			return nil, fmt.Errorf("%s: %s: pass %s HOST:PORT, such as %s", where, problem, l.flag, l.example)
		}
		return nil, fmt.Errorf("%s: %s: set %s to HOST:PORT, such as %s, or pass %s", where, problem, l.setting, l.example, l.flag)
	}
	lis, err := net.Listen("tcp", l.addr)
	if err != nil {
		if l.fromFlag {
			return nil, fmt.Errorf("%s: %w: pass another %s, such as %s", where, err, l.flag, l.otherExample())
		}
		return nil, fmt.Errorf("%s: %w: set another %s, or pass %s", where, err, l.setting, l.flag)
	}
	return lis, nil
}

// otherExample is an address to suggest instead of l's, which is taken:
// its example, unless that is on the port taken, and then l's host with
// port 0.
func (l listenAddr) otherExample() string {
	host, port, err := net.SplitHostPort(l.addr)
	if err != nil {
		return l.example
	}
	if !slices.ContainsFunc(strings.Split(l.example, " or "), func(e string) bool {
		_, p, err := net.SplitHostPort(strings.Fields(e + " ")[0])
		return err == nil && p == port
	}) {
		return l.example
	}
	return net.JoinHostPort(host, "0") + " (any free port: the address it listens on is printed)"
}

// checkListen returns what is wrong with addr as an address to listen on,
// or "" when nothing is before trying it: a host that is only numbers and
// dots must be an IP address, so that it is not looked up as a name.
func checkListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "want HOST:PORT"
	}
	if port != "" && strings.Trim(port, "0123456789") == "" {
		if n, err := strconv.Atoi(port); err != nil || n > 65535 {
			return fmt.Sprintf("port %s is not 0 to 65535", port)
		}
	}
	if host != "" && strings.Trim(host, "0123456789.") == "" && net.ParseIP(host) == nil {
		return host + " is not an IP address (four numbers from 0 to 255)"
	}
	return ""
}

// listeners are the listeners of a server, opened before anything else
// is done, so that an address it cannot use stops it at once. A nil one is
// not served.
type listeners struct {
	grpc, admin, metrics, http, console net.Listener
}

// close closes the listeners that nothing took over; closing one that was
// taken over and closed already does nothing.
func (ls *listeners) close() {
	if ls == nil {
		return
	}
	for _, l := range []net.Listener{ls.grpc, ls.admin, ls.metrics, ls.http, ls.console} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// listenFirst opens the listeners of p's server block: the gRPC address,
// and the admin, metrics and HTTP/JSON ones when set; and the console's,
// which only the command line sets, when flags.console is. The flags say
// which addresses serve's command line gave.
func (a *app) listenFirst(s larder.Server, flags listenFlags) (*listeners, error) {
	ls := &listeners{}
	for _, l := range []struct {
		to     *net.Listener
		always bool // listened on even when addr is empty (and refused then)
		addr   listenAddr
	}{
		{&ls.grpc, true, listenAddr{addr: s.Listen, flag: "--listen", setting: "server.listen", fromFlag: flags.listen, example: "127.0.0.1:50051 or :50051"}},
		{&ls.admin, false, listenAddr{addr: s.AdminListen, flag: "--admin-listen", setting: "server.admin_listen", fromFlag: flags.admin, example: "127.0.0.1:50052"}},
		{&ls.metrics, false, listenAddr{addr: s.MetricsListen, flag: "--metrics-listen", setting: "server.metrics_listen", fromFlag: flags.metrics, example: "127.0.0.1:9464"}},
		{&ls.http, false, listenAddr{addr: s.HTTPListen, flag: "--http", setting: "server.http_listen", fromFlag: flags.http, example: "127.0.0.1:8080"}},
		{&ls.console, false, listenAddr{addr: flags.console, flag: "--console", fromFlag: true, example: "127.0.0.1:8081"}},
	} {
		if l.addr.addr == "" && !l.always {
			continue
		}
		lis, err := a.listen(l.addr)
		if err != nil {
			ls.close()
			return nil, err
		}
		*l.to = lis
	}
	return ls, nil
}

// listenFlags says which of serve's addresses its command line gave, and
// the console's address, which only the command line gives.
type listenFlags struct {
	listen, admin, metrics, http bool
	console                      string
}
