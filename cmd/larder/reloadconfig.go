package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/larder-dev/larder"
)

// configDebounce is how long serve waits after the last change to
// larder.yaml before it reloads it: editors write a file in several steps.
const configDebounce = 300 * time.Millisecond

// configReloader reloads a running server's larder.yaml on SIGHUP and when
// the file changes.
type configReloader struct {
	a *app
	r *running
	// prepare applies serve's command line to a freshly loaded project, as
	// it did to the first one.
	prepare func(*larder.Project) error
	// inProcess names what else this serve runs that takes larder.yaml
	// only at start-up ("--schedule"), or is empty.
	inProcess string
	// sum is the SHA-256 of the file last loaded, to skip writes that do
	// not change it.
	sum [sha256.Size]byte

	hup  chan os.Signal
	fsw  *fsnotify.Watcher // nil when the file is not watched
	path string            // the file, absolute
}

// listen starts listening for SIGHUP and, with files, for changes to
// larder.yaml; loop acts on them. It is called before serve says it
// listens, so that a SIGHUP sent from then on never stops the process.
func (c *configReloader) listen(files bool) {
	a := c.a
	if data, err := os.ReadFile(a.configPath); err == nil {
		c.sum = sha256.Sum256(data)
	}
	c.hup = make(chan os.Signal, 1)
	signal.Notify(c.hup, syscall.SIGHUP)
	path, err := filepath.Abs(a.configPath)
	if !files || err != nil {
		return
	}
	c.path = path
	fsw, err := fsnotify.NewWatcher()
	if err == nil {
		if err = fsw.Add(filepath.Dir(path)); err != nil {
			fsw.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "warning: %s is not watched, so an edit applies on SIGHUP only: %v\n", a.configPath, err)
		return
	}
	c.fsw = fsw
}

// loop reloads larder.yaml on SIGHUP, and when the file is written,
// created or renamed over, until ctx ends; then it stops listening.
func (c *configReloader) loop(ctx context.Context) {
	a := c.a
	defer signal.Stop(c.hup)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if c.fsw != nil {
		defer c.fsw.Close()
		events, errs = c.fsw.Events, c.fsw.Errors
	}
	path := c.path
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.hup:
			c.reload(ctx, true)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// The file itself, or anything it may be a symlink through:
			// a Kubernetes ConfigMap mount swaps a ..data symlink beside
			// it. A reload of an unchanged file does nothing.
			name := filepath.Base(ev.Name)
			if (filepath.Clean(ev.Name) == path || strings.HasPrefix(name, "..")) && ev.Has(fsnotify.Write|fsnotify.Create|fsnotify.Rename) {
				timer.Reset(configDebounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			a.logger.Error("watching the project file", "file", a.configPath, "err", err)
		case <-timer.C:
			c.reload(ctx, false)
		}
	}
}

// reload loads larder.yaml again and applies it to the running server, or
// says why not; the configuration served before keeps serving on any
// error. asked says that an operator asked for it (SIGHUP): a file that
// did not change is then reloaded all the same.
func (c *configReloader) reload(ctx context.Context, asked bool) {
	a := c.a
	data, err := os.ReadFile(a.configPath)
	if err != nil {
		c.refuse(err)
		return
	}
	sum := sha256.Sum256(data)
	if sum == c.sum && !asked {
		return
	}
	c.sum = sum
	if c.inProcess != "" {
		c.refuse(fmt.Errorf("this serve also runs %s, which reads %s only at start-up: restart serve to apply the change", c.inProcess, a.configPath))
		return
	}
	p, err := a.loadProject()
	if err == nil {
		err = c.prepare(p)
	}
	if err == nil {
		err = c.apply(ctx, p)
	}
	if err != nil {
		c.refuse(err)
	}
}

// apply makes the server serve p.
func (c *configReloader) apply(ctx context.Context, p *larder.Project) error {
	a, r := c.a, c.r
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := r.project.Load()
	if !reflect.DeepEqual(p.Redis, old.Redis) {
		fmt.Fprintf(a.stderr, "warning: the redis block of %s changed; it applies at the next restart\n", a.configPath)
	}
	if !reflect.DeepEqual(p.Scheduler, old.Scheduler) || !reflect.DeepEqual(p.Jobs, old.Jobs) {
		fmt.Fprintf(a.stderr, "warning: the scheduler and jobs blocks of %s apply at the next restart\n", a.configPath)
	}
	// The embedded store holds only what this process wrote: a view added
	// or changed is materialized before it is served.
	if r.b.embedded != nil {
		var views []*larder.View
		for _, v := range p.Views {
			if ov := old.View(v.Name); ov == nil || ov.Fingerprint() != v.Fingerprint() {
				views = append(views, v)
			}
		}
		if len(views) > 0 {
			views = a.embeddedRunnable(views)
		}
		if len(views) > 0 {
			if _, err := a.materialize(ctx, p, r.b, views, larder.TriggerStartup); err != nil {
				return err
			}
		}
	}
	if err := r.svc.ApplyProject(ctx, p); err != nil {
		return err
	}
	r.project.Store(p)
	fresh := viewFreshness(p, r.b.store, a.now)
	r.freshness.Store(&fresh)
	if r.reg != nil {
		coll := newFreshnessCollector(p, r.b.store, a.now, a.logger)
		r.reg.Unregister(r.freshColl)
		if err := r.reg.Register(coll); err != nil {
			a.logger.Error("freshness metrics after a reload", "err", err)
		} else {
			r.freshColl = coll
		}
	}
	a.watchModels(r, p)
	// Register the new schemas at once, so that cleanup keeps what this
	// server reads now; KeepReadersRegistered renews them.
	if err := r.b.store.RegisterReaders(ctx, p.Views, 0); err != nil {
		a.logger.Warn("registering the schemas this server reads", "err", err)
	}
	fmt.Fprintf(a.stderr, "%s reloaded: %s\n", a.configPath, p.ChangesSince(old))
	return nil
}

// refuse reports a reload that did not apply, and counts it.
func (c *configReloader) refuse(err error) {
	c.r.srvMetrics.CountConfigReload(false)
	fmt.Fprintf(c.a.stderr, "%s not applied, the previous configuration keeps serving: %s\n", c.a.configPath, strings.TrimSpace(err.Error()))
}
