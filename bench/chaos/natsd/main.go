// Command natsd is a one-node NATS server with JetStream on loopback, so the
// chaos harness can run the listener in external-NATS mode and restart (or
// kill) the server under it without a nats-server binary.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", "127.0.0.1:4222", "client address (loopback)")
	store := flag.String("store", "", "JetStream store directory (required)")
	sync := flag.Bool("sync", true, "fsync before every PubAck (sync_interval: always)")
	flag.Parse()
	host, portStr, err := net.SplitHostPort(*addr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || *store == "" {
		fmt.Fprintln(os.Stderr, "natsd: -addr host:port and -store are required")
		return 2
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "chaos-natsd",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   *store,
		SyncAlways: *sync,
		NoSigs:     true, // our handler below shuts down cleanly
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		return 1
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		fmt.Fprintln(os.Stderr, "natsd: not ready after 30s")
		return 1
	}
	fmt.Println("natsd ready on", *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}
