// Package pgtest gives tests a real PostgreSQL server with pgvector.
//
// DSN returns $TXLANE_TEST_DATABASE when it is set; `make test` sets it to one cluster that it
// starts for every package. Otherwise the first call in a test binary starts a throwaway
// cluster with scripts/pg.sh (installing PostgreSQL and pgvector first if they are missing),
// and Main stops it when the tests are done. A package whose tests call DSN therefore needs
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// A cluster from scripts/pg.sh has the database txlane_test and template1 with the vector
// extension, trusts the superuser postgres and the role txlane_app, and has one role per
// password authentication method over TCP (see PasswordRoles). A database given through
// $TXLANE_TEST_DATABASE is expected to be set up the same way.
//
// NOTE: tests of different packages share the database when $TXLANE_TEST_DATABASE is set and
// run concurrently: name tables uniquely per test and drop them.
//
// Files: pgtest.go (DSN, Main, Config, Exec, PasswordRoles). No goroutines; the cluster a test
// binary starts is guarded by a sync.Once.
package pgtest
