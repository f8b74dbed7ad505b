//go:build !memfloor_runtime && !memfloor_tls

package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func init() { layers[2] = startGRPC }

// windowSize is the transport's fixed flow-control window: the gRPC options
// below are the ones of transport/ that change memory, so that the floor
// is not raised by defaults a node does not run with.
const windowSize = 64 << 10

// startGRPC serves gRPC's standard health service over mutual TLS on
// 127.0.0.1 and calls its Check every period from a client of its own.
func startGRPC() (running, error) {
	serverConf, clientConf, err := mutualTLS()
	if err != nil {
		return running{}, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return running{}, err
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(serverConf)),
		grpc.StaticStreamWindowSize(windowSize),
		grpc.StaticConnWindowSize(windowSize),
		grpc.ReadBufferSize(0),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(lis) // returns when srv stops
	}()
	stopServer := func() {
		srv.Stop()
		wg.Wait()
	}
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(clientConf)),
		grpc.WithStaticStreamWindowSize(windowSize),
		grpc.WithStaticConnWindowSize(windowSize),
		grpc.WithReadBufferSize(0),
		grpc.WithIdleTimeout(0),
	)
	if err != nil {
		stopServer()
		return running{}, err
	}
	client := healthpb.NewHealthClient(conn)
	t := startTicker(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return errors.New("grpc: health Check answered " + resp.GetStatus().String() + ", want SERVING")
		}
		return nil
	})
	return running{
		exchanges: t.count.Load,
		stop: func() error {
			err := t.stop()
			conn.Close()
			stopServer()
			return err
		},
	}, nil
}
