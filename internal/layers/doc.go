// Package layers holds the tests of the repository's shape. It has no code of
// its own.
//
// Files:
//
//	layers_test.go  each product package imports only packages of lower
//	                layers, as the README's "Layout" section draws them
//	shape_test.go   the README's Layout table lists every package; every
//	                package has a doc.go whose file map names its files;
//	                the Markdown files and comments point nowhere outside
//	                the repository
//
// No goroutines, no locks.
package layers
