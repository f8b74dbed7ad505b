//go:build !memfloor_runtime && !memfloor_tls && !memfloor_grpc

package main

import (
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func init() { layers[3] = startFull }

var (
	raftBucket   = []byte("raft")
	hardStateKey = []byte("hardstate")
)

// fullMetricsAddr is the address the last started full layer serves its
// metrics on, for the tests.
var fullMetricsAddr string

// startFull runs a one-voter raft.RawNode ticked every period that persists
// every Ready to a bbolt file in a temporary directory, and a Prometheus
// registry (the Go and process collectors, as a node registers, and three
// metrics of its own) served on 127.0.0.1.
func startFull() (running, error) {
	dir, err := os.MkdirTemp("", "memfloor-")
	if err != nil {
		return running{}, err
	}
	db, err := bolt.Open(filepath.Join(dir, "raft.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		os.RemoveAll(dir)
		return running{}, err
	}
	closeStore := func() error {
		err := db.Close()
		if rmErr := os.RemoveAll(dir); err == nil {
			err = rmErr
		}
		return err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(raftBucket)
		return err
	}); err != nil {
		closeStore()
		return running{}, err
	}

	reg := prometheus.NewRegistry()
	ticks := prometheus.NewCounter(prometheus.CounterOpts{Name: "memfloor_ticks_total", Help: "Raft ticks."})
	term := prometheus.NewGauge(prometheus.GaugeOpts{Name: "memfloor_raft_term", Help: "The raft term."})
	persist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "memfloor_persist_seconds", Help: "Time to persist one Ready to bbolt."})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), ticks, term, persist)

	storage := raft.NewMemoryStorage()
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              1,
		ElectionTick:    10,
		HeartbeatTick:   1,
		Storage:         storage,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		CheckQuorum:     true,
		PreVote:         true,
		Logger:          &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	if err != nil {
		closeStore()
		return running{}, err
	}
	if err := rn.Bootstrap([]raft.Peer{{ID: 1}}); err != nil {
		closeStore()
		return running{}, err
	}
	// handleReady persists what raft asks to, as a node does before it
	// acts on a Ready: hard state and entries in one bbolt transaction.
	handleReady := func() error {
		for rn.HasReady() {
			rd := rn.Ready()
			began := time.Now()
			if err := db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(raftBucket)
				if !raft.IsEmptyHardState(rd.HardState) {
					v, err := proto.Marshal(rd.HardState)
					if err != nil {
						return err
					}
					if err := b.Put(hardStateKey, v); err != nil {
						return err
					}
				}
				for _, e := range rd.Entries {
					v, err := proto.Marshal(e)
					if err != nil {
						return err
					}
					if err := b.Put(binary.BigEndian.AppendUint64(nil, e.GetIndex()), v); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
			persist.Observe(time.Since(began).Seconds())
			if !raft.IsEmptyHardState(rd.HardState) {
				storage.SetHardState(rd.HardState)
				term.Set(float64(rd.HardState.GetTerm()))
			}
			if err := storage.Append(rd.Entries); err != nil {
				return err
			}
			for _, e := range rd.CommittedEntries {
				if e.GetType() == raftpb.EntryType_EntryConfChange {
					cc := &raftpb.ConfChange{}
					if err := proto.Unmarshal(e.GetData(), cc); err != nil {
						return err
					}
					rn.ApplyConfChange(cc)
				}
			}
			rn.Advance(rd)
		}
		return nil
	}
	if err := handleReady(); err != nil {
		closeStore()
		return running{}, err
	}
	if err := rn.Campaign(); err != nil {
		closeStore()
		return running{}, err
	}
	if err := handleReady(); err != nil {
		closeStore()
		return running{}, err
	}
	if st := rn.Status(); st.RaftState != raft.StateLeader {
		closeStore()
		return running{}, errors.New("raft: the one voter did not become leader after its campaign (state " + st.RaftState.String() + ")")
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeStore()
		return running{}, err
	}
	fullMetricsAddr = lis.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(lis) // returns when srv is closed
	}()

	t := startTicker(func() error {
		rn.Tick()
		ticks.Inc()
		return handleReady()
	})
	return running{
		exchanges: t.count.Load,
		stop: func() error {
			err := t.stop()
			srv.Close()
			wg.Wait()
			if cerr := closeStore(); err == nil {
				err = cerr
			}
			return err
		},
	}, nil
}
