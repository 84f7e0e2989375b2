package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/proxy"
)

// Errors of a stop that was not clean: the command exits 1 after them.
var (
	errShutdownTimeout = errors.New("stopped at shutdown_timeout: clients still inside transactions or running statements were closed")
	errStoppedAtOnce   = errors.New("stopped at once on a second signal: clients still inside transactions or running statements were closed")
)

// run serves until SIGINT or SIGTERM, then stops gracefully (see
// proxy.Server.Shutdown); a second signal stops at once. SIGHUP, edits of
// the configuration file and the admin console's RELOAD reload the
// configuration. It returns nil after a clean stop.
func run(cfg *config.Config, src config.Sources, path string, log *zap.Logger, level zap.AtomicLevel) error {
	// Signals are caught from the start, so that none is lost while starting.
	stop := make(chan os.Signal, 2)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(stop)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	metrics := proxy.NewMetrics()
	r := newReloader(path, cfg, src, log, level, metrics)
	opts, err := proxyOptions(cfg, log)
	if err != nil {
		return err
	}
	if opts.TLS, err = clientTLS(cfg); err != nil {
		return err
	}
	opsOptions(cfg, src, &opts)
	opts.Metrics = metrics
	opts.OnReload = func() error { return r.reload("admin console", true) }
	srv, err := proxy.New(opts)
	if err != nil {
		return err
	}
	r.srv = srv

	ln, err := listenTCP(cfg.Listen, cfg.ListenReuseport)
	if err != nil {
		srv.Close()
		return err
	}
	var uln net.Listener
	if cfg.UnixSocketDir != "" {
		if uln, err = listenUnix(cfg.UnixSocketDir, ln.Addr()); err != nil {
			ln.Close()
			srv.Close()
			return err
		}
	}
	var admin *adminHTTP
	if cfg.Admin.Listen != "" {
		if admin, err = startAdminHTTP(cfg.Admin.Listen, srv, opts.Primary, cfg.Admin.Pprof, log); err != nil {
			ln.Close()
			srv.Close()
			return err
		}
	}
	r.setAdmin(admin)
	if err := r.watch(); err != nil {
		log.Warn("cannot watch the configuration file; reload with SIGHUP or RELOAD", zap.String("config", path), zap.Error(err))
	}
	defer r.close()

	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	if uln != nil {
		go func() { serveErr <- srv.Serve(uln) }()
		log.Info("txlane listening on a Unix-domain socket", zap.String("socket", uln.Addr().String()))
	}
	log.Info("txlane listening", zap.String("listen", ln.Addr().String()), zap.String("config", path),
		zap.String("admin", cfg.Admin.Listen))

	for {
		select {
		case <-hup:
			r.reload("SIGHUP", true)
			continue
		case err := <-serveErr:
			// Serve ends early only when the listener fails.
			srv.Close()
			admin.close()
			return err
		case sig := <-stop:
			log.Info("stopping gracefully: no new clients; waiting for open transactions and statements in flight",
				zap.Stringer("signal", sig), zap.Duration("shutdown_timeout", r.current().ShutdownTimeout))
		}
		break
	}
	if admin != nil {
		admin.stopping.Store(true)
	}

	ctx, cancel := context.WithTimeout(context.Background(), r.current().ShutdownTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	var result error
	select {
	case err := <-done:
		if err != nil {
			result = errShutdownTimeout
		}
	case sig := <-stop:
		log.Warn("second signal: stopping at once", zap.Stringer("signal", sig))
		cancel()
		<-done
		result = errStoppedAtOnce
	}
	<-serveErr
	admin.close()
	if result != nil {
		log.Warn("txlane stopped", zap.Error(result))
	} else {
		log.Info("txlane stopped")
	}
	return result
}

// opsOptions sets what the operations side of the proxy needs from cfg
// (its values from src).
func opsOptions(cfg *config.Config, src config.Sources, opts *proxy.Options) {
	opts.OpsOptions = proxy.OpsOptions{
		QueryWaitTimeout:         cfg.QueryWaitTimeout,
		IdleInTransactionTimeout: cfg.IdleInTransactionTimeout,
		AdminUsers:               cfg.Admin.Users,
		Settings:                 settings(cfg, src),
		OnReload:                 opts.OnReload,
	}
	// NOTE: query_wait_timeout caps every wait for a backend, the read
	// pool's included.
	opts.ReadPool.AcquireTimeout = min(cfg.ReadPool.AcquireTimeout, cfg.QueryWaitTimeout)
}
