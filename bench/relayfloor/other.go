//go:build !linux

package main

import "errors"

func runEpoll(listen, server string) error { return errors.New("-mode epoll needs Linux") }

func runBlock(listen, server string) error { return errors.New("-mode block needs Linux") }

func runHybrid(listen, server string) error { return errors.New("-mode hybrid needs Linux") }
