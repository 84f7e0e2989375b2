package main

import (
	"crypto/tls"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/proxy"
	"github.com/txlane/txlane/proxy/auth"
)

// serve runs txlane with cfg (its values from src), read from path, until SIGINT or SIGTERM. The
// lifecycle (reload, admin HTTP endpoint, graceful stop) is in run.go.
func serve(cfg *config.Config, src config.Sources, path string) error {
	log, level, err := newLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer log.Sync()
	return run(cfg, src, path, log, level)
}

// proxyOptions turns a validated configuration into the proxy's options,
// except TLS towards clients, which only clientTLS reads (at start). The
// routing rules are cfg.RulesConfig(), the same mapping `txlane explain`
// uses.
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
	authOpts, err := authOptions(cfg)
	if err != nil {
		return proxy.Options{}, err
	}
	p := cfg.Policy
	return proxy.Options{
		Auth:               authOpts,
		Primary:            primary,
		MaxClientConn:      cfg.MaxClientConn,
		MaxMessageSize:     int(cfg.MaxMessageSize),
		ClientLoginTimeout: cfg.ClientLoginTimeout,
		Logger:             log,
		Version:            releaseVersion(),
		ReadPool: proxy.ReadPoolOptions{
			Config:            readPool,
			MaxConns:          cfg.ReadPool.MaxConns,
			MinIdle:           cfg.ReadPool.MinIdle,
			AcquireTimeout:    cfg.ReadPool.AcquireTimeout,
			MaxLifetime:       cfg.ReadPool.MaxLifetime,
			HealthCheckPeriod: cfg.ReadPool.HealthCheckPeriod,
		},
		Rules:              cfg.RulesConfig(),
		RerouteWaitTimeout: p.RerouteWaitTimeout,
		Discover:           p.DiscoverVectorTables,
		DiscoverInterval:   p.DiscoverInterval,
		Pool:               poolOptions(cfg),
		Instances:          instanceOptions(cfg),
	}, nil
}

// instanceOptions maps instance_id, peers and policy.shared_units.
func instanceOptions(cfg *config.Config) proxy.InstanceOptions {
	o := proxy.InstanceOptions{ID: cfg.InstanceID, SharedUnits: cfg.Policy.SharedUnits}
	for _, p := range cfg.Peers {
		o.Peers = append(o.Peers, proxy.Peer{ID: p.ID, Addr: p.Addr})
	}
	return o
}

// poolOptions maps the pool keys of cfg to the proxy's.
func poolOptions(cfg *config.Config) proxy.PoolOptions {
	o := proxy.PoolOptions{Mode: proxy.PoolMode(cfg.PoolMode), Size: cfg.PoolSize, MinSize: cfg.MinPoolSize,
		MaxDBConnections: cfg.MaxDBConnections, MaxUserConnections: cfg.MaxUserConnections,
		IgnoreStartupParameters: cfg.IgnoreStartupParameters,
		ServerResetQuery:        cfg.ServerResetQuery, ServerIdleTimeout: cfg.ServerIdleTimeout, ServerLifetime: cfg.ServerLifetime}
	for _, ov := range cfg.PoolOverrides {
		o.Overrides = append(o.Overrides, proxy.PoolOverride{Database: ov.Database, User: ov.User,
			Mode: proxy.PoolMode(ov.PoolMode), Size: ov.PoolSize})
	}
	return o
}

// authOptions turns the auth_* keys into the proxy's AuthOptions, reading
// auth_file: at start and at every reload, so that SIGHUP picks up an edited
// file (a bad file fails the reload and keeps the last good one).
func authOptions(cfg *config.Config) (proxy.AuthOptions, error) {
	o := proxy.AuthOptions{Type: auth.Method(cfg.AuthType), User: cfg.AuthUser, Query: cfg.AuthQuery, DBName: cfg.AuthDBName}
	if cfg.AuthFile != "" {
		f, err := auth.LoadFile(cfg.AuthFile)
		if err != nil {
			return o, fmt.Errorf("auth_file: %w", err)
		}
		o.File = f
	}
	return o, nil
}

// clientTLS loads the certificate tls.cert and tls.key name; nil when TLS
// is off. It runs only at start: tls.* need a restart.
func clientTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.TLS.Cert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// newLogger builds the logger lc describes. Its level can change later
// through the returned AtomicLevel (reload); its format cannot.
func newLogger(lc config.Log) (*zap.Logger, zap.AtomicLevel, error) {
	level, err := zapLevel(lc.Level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	zc := zap.NewProductionConfig()
	if lc.Format == config.LogConsole {
		zc = zap.NewDevelopmentConfig()
		zc.Development = false
	}
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.DisableStacktrace = true
	log, err := zc.Build()
	return log, zc.Level, err
}

// zapLevel converts log.level.
func zapLevel(l config.LogLevel) (zapcore.Level, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(l)); err != nil {
		return level, fmt.Errorf("log.level: %w", err)
	}
	return level, nil
}
