//go:build !memfloor_runtime

package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftelect/raftelect/certs"
)

func init() { layers[1] = startTLS }

// period is how often every layer does its work: a node's heartbeat.
const period = 100 * time.Millisecond

// serverName is the name the server's certificate carries and the client
// checks.
const serverName = "memfloor-server"

// mutualTLS makes a CA, a server and a client certificate in memory with
// the certs package, as `raftelect certs` issues them for nodes, and the
// two ends' configurations: each side presents its certificate and
// verifies the other's against the CA.
func mutualTLS() (server, client *tls.Config, err error) {
	ca, err := certs.NewCA("memfloor CA", 24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	issue := func(name string) (tls.Certificate, error) {
		certPEM, keyPEM, err := ca.Issue(name, nil, 24*time.Hour)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.X509KeyPair(certPEM, keyPEM)
	}
	serverCert, err := issue(serverName)
	if err != nil {
		return nil, nil, err
	}
	clientCert, err := issue("memfloor-client")
	if err != nil {
		return nil, nil, err
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{clientCert},
		RootCAs:      pool,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS13,
	}
	return server, client, nil
}

// ticker runs work every period on its own goroutine until stopped,
// counting the rounds that succeed; the first error ends it.
type ticker struct {
	done  chan struct{}
	wg    sync.WaitGroup
	count atomic.Int64
	err   error // set before wg.Done
}

func startTicker(work func() error) *ticker {
	t := &ticker{done: make(chan struct{})}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-t.done:
				return
			case <-tick.C:
			}
			if err := work(); err != nil {
				t.err = err
				return
			}
			t.count.Add(1)
		}
	}()
	return t
}

// stop ends the loop, waits for it and returns the error that ended it
// early, if any.
func (t *ticker) stop() error {
	close(t.done)
	t.wg.Wait()
	return t.err
}

// tlsMessage is the tiny message the client sends and the server echoes.
const tlsMessage = "heartbt\n"

// startTLS listens with mutual TLS on 127.0.0.1, connects one client and
// sends tlsMessage every period, reading its echo each time.
func startTLS() (running, error) {
	serverConf, clientConf, err := mutualTLS()
	if err != nil {
		return running{}, err
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		return running{}, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted []net.Conn
		closed   bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return // the listener is closed
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			accepted = append(accepted, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c) // echo until the connection closes
			}()
		}
	}()
	closeServer := func() {
		lis.Close()
		mu.Lock()
		closed = true
		for _, c := range accepted {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(&d, "tcp", lis.Addr().String(), clientConf)
	if err != nil {
		closeServer()
		return running{}, err
	}
	buf := make([]byte, len(tlsMessage))
	t := startTicker(func() error {
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		if _, err := io.WriteString(conn, tlsMessage); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != tlsMessage {
			return errors.New("tls: the echo differs from what was sent")
		}
		return nil
	})
	return running{
		exchanges: t.count.Load,
		stop: func() error {
			err := t.stop()
			conn.Close()
			closeServer()
			return err
		},
	}, nil
}
