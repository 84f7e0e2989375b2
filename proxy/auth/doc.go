// Package auth is authentication that txlane does itself, for auth_type
// scram-sha-256, md5 and trust: checking a client's password against a
// stored secret, and logging in to the server as that client without the
// client, with what the client's login left txlane (SCRAM pass-through keys,
// as PgBouncer does). With auth_type server (the default) none of it is used:
// logins are relayed (wire.RelayLogin) and txlane knows no secret.
//
// Secrets are what PostgreSQL stores in pg_authid.rolpassword: SCRAM-SHA-256
// verifiers and md5 hashes (RFC 5802, RFC 7677; "Password Authentication"
// and "SASL Authentication" in the PostgreSQL manual), read from an auth file
// (PgBouncer's userlist.txt format) or looked up with an auth_query. A
// verifier is not a password and lets nobody log in; the ClientKey that a
// client's SCRAM proof reveals does (for servers with the same verifier),
// and lives in txlane's memory as Credentials for as long as txlane needs to
// open backends for that user.
//
// Files:
//
//	scram.go         SCRAM-SHA-256 maths: Verifier (parse, print), Keys,
//	                 proofs and signatures, tls-server-end-point hashes
//	secret.go        Secret (verifier, md5 hash or password), md5 maths,
//	                 Credentials
//	file.go          File: the auth file
//	query.go         Query: auth_query over connections of the auth user
//	authenticate.go  Method; Authenticate: txlane as the server of a
//	                 client's login (SCRAM-SHA-256, -PLUS, md5, mock
//	                 exchanges for unknown users)
//	login.go         Login: txlane as the client of a server login
//	                 (cleartext, md5, SCRAM-SHA-256, -PLUS) with Credentials
//
// Layering: auth uses proxy/wire (framing, errors, LoginResult) and pgconn
// (DSNs, and running the auth_query once Login has logged in); package proxy
// uses auth.
//
// Goroutines: one per Query, closing its idle connections (reap).
//
// Locks: Query.mu guards its per-database connection pools; it is the only
// lock, never held across a network read.
package auth
