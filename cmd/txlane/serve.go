package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/policy"
	"github.com/txlane/txlane/proxy"
)

// serve runs txlane with cfg until SIGINT or SIGTERM.
func serve(cfg *config.Config, path string) error {
	log, err := newLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer log.Sync()

	opts, err := proxyOptions(cfg, log)
	if err != nil {
		return err
	}
	srv, err := proxy.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("txlane listening", zap.String("listen", ln.Addr().String()), zap.String("config", path))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Info("stopping", zap.Stringer("signal", s))
		srv.Close()
	}()
	return srv.Serve(ln)
}

// proxyOptions turns a validated configuration into the proxy's options.
func proxyOptions(cfg *config.Config, log *zap.Logger) (proxy.Options, error) {
	primary, err := pgconn.ParseConfig(cfg.Primary)
	if err != nil {
		return proxy.Options{}, fmt.Errorf("primary: %w", err)
	}
	// The vector lane reaches the primary's server unless read_pool.dsn
	// names another; it logs in with that DSN's own credentials.
	readPool := primary
	if cfg.ReadPool.DSN != "" {
		if readPool, err = pgconn.ParseConfig(cfg.ReadPool.DSN); err != nil {
			return proxy.Options{}, fmt.Errorf("read_pool.dsn: %w", err)
		}
	}
	p := cfg.Policy
	opts := proxy.Options{
		Primary:            primary,
		MaxClientConn:      cfg.MaxClientConn,
		MaxMessageSize:     int(cfg.MaxMessageSize),
		ClientLoginTimeout: cfg.ClientLoginTimeout,
		Logger:             log,
		ReadPool: proxy.ReadPoolOptions{
			Config:            readPool,
			MaxConns:          cfg.ReadPool.MaxConns,
			MinIdle:           cfg.ReadPool.MinIdle,
			AcquireTimeout:    cfg.ReadPool.AcquireTimeout,
			MaxLifetime:       cfg.ReadPool.MaxLifetime,
			HealthCheckPeriod: cfg.ReadPool.HealthCheckPeriod,
		},
		Rules: policy.RulesConfig{
			VectorTables:      p.VectorTables,
			AfterWrite:        string(p.AfterWrite),
			OnUnavailable:     string(cfg.ReadPool.OnUnavailable),
			WritingFunctions:  p.WritingFunctions,
			ReadOnlyFunctions: p.ReadOnlyFunctions,
		},
		Discover:         p.DiscoverVectorTables,
		DiscoverInterval: p.DiscoverInterval,
	}
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("tls: %w", err)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return opts, nil
}

func newLogger(lc config.Log) (*zap.Logger, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	zc := zap.NewProductionConfig()
	if lc.Format == config.LogConsole {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.DisableStacktrace = true
	return zc.Build()
}
