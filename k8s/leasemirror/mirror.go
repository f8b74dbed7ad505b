// Package leasemirror makes raftelect's leader visible in every member's
// Kubernetes cluster the way client-go leader election is: a
// coordination.k8s.io/v1 Lease naming the holder, so that
//
//	kubectl get lease -n <namespace> <name>
//
// shows who leads. The Lease is an observation, not a lock: raftelect
// decides who leads, and nothing reads the Lease back to decide anything.
// Deleting or editing it changes no leadership; the leader writes it again
// at its next renewal.
//
// Run it on the leader only, for as long as it leads (a controller-runtime
// runnable that needs leader election, or OnStartedLeading), with a client
// for each member's cluster. Followers never write the Lease: Run writes
// only while Token reports a leadership, and stops at the first round in
// which the token is gone or changed. Each write is a compare-and-swap on
// the Lease's resourceVersion and never replaces a Lease that records a
// higher term, so a paused old leader cannot overwrite its successor's
// record.
//
// The Lease carries:
//
//	spec.holderIdentity        the leader's client-go identity
//	spec.leaseTransitions      the raft term (the fencing token), as int32
//	spec.acquireTime           when this holder started leading in this term
//	spec.renewTime             the last renewal (every Config.RenewPeriod)
//	spec.leaseDurationSeconds  Config.LeaseDuration, for readers' staleness
//	                           checks: a renewTime older than this means the
//	                           writer stopped (a new leader writes it again)
//	annotation raftelect.io/term  the full 64-bit term
package leasemirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// TermAnnotation carries the raft term of the leadership the Lease records.
const TermAnnotation = "raftelect.io/term"

// NoteAnnotation says, to whoever finds the Lease, what it is.
const NoteAnnotation = "raftelect.io/note"

const note = "written by the raftelect leader as an observation; it is not a lock and nothing reads it to decide who leads"

// Config configures Run.
type Config struct {
	// Name and Namespace of the Lease (defaults "raftelect-leader", "default").
	Name, Namespace string
	// Identity is the leader's client-go identity, written as the holder
	// (resourcelock.Lock.Identity()).
	Identity string
	// Clusters are clients of every member's cluster, by a name used in
	// logs. Run writes the Lease in each.
	Clusters map[string]kubernetes.Interface
	// Token reports the fencing token of the leadership this process holds
	// (resourcelock.Lock.Token). Run writes only while it reports the same
	// token it reported when Run began.
	Token func() (uint64, bool)
	// RenewPeriod is how often the Lease is renewed (default 2s).
	RenewPeriod time.Duration
	// LeaseDuration is written as spec.leaseDurationSeconds (default 15s,
	// rounded up to whole seconds).
	LeaseDuration time.Duration
	// Clock (default: the real clock) gives the times written, as client-go's
	// LeaderElectionConfig.Clock does.
	Clock clock.Clock
	// Logger receives failed writes (default: discard).
	Logger *slog.Logger
}

// ErrNotLeading is returned by Run when it was started without a leadership.
var ErrNotLeading = errors.New("leasemirror: Token reports no leadership: run the mirror on the leader only, after it started leading")

func (c *Config) defaults() error {
	if c.Name == "" {
		c.Name = "raftelect-leader"
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.RenewPeriod == 0 {
		c.RenewPeriod = 2 * time.Second
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if c.Identity == "" {
		errs = append(errs, errors.New("Identity is empty: pass the leader's client-go identity (resourcelock.Lock.Identity())"))
	}
	if c.Token == nil {
		errs = append(errs, errors.New("Token is nil: pass resourcelock.Lock.Token"))
	}
	if len(c.Clusters) == 0 {
		errs = append(errs, errors.New("Clusters is empty: pass a client for each member's cluster"))
	}
	if c.RenewPeriod < 0 || c.LeaseDuration < 0 {
		errs = append(errs, fmt.Errorf("renew period %v and lease duration %v must be positive", c.RenewPeriod, c.LeaseDuration))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("leasemirror: %w", err)
	}
	return nil
}

// Run writes the Lease in every cluster now and every RenewPeriod until ctx
// ends or the leadership it started under ends; it returns nil then. A
// failed write is logged and retried at the next renewal. It returns an
// error only for a bad Config or when started without a leadership.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	term, ok := cfg.Token()
	if !ok {
		return ErrNotLeading
	}
	acquired := metav1.NewMicroTime(cfg.Clock.Now())
	for {
		for name, c := range cfg.Clusters {
			// Checked before every write: a follower never writes, and a
			// leader whose term ended stops at once.
			if now, ok := cfg.Token(); !ok || now != term || ctx.Err() != nil {
				return nil
			}
			if err := write(ctx, cfg, c, term, acquired); err != nil && ctx.Err() == nil {
				cfg.Logger.Warn("leasemirror: could not write the Lease", "cluster", name, "lease", cfg.Namespace+"/"+cfg.Name, "term", term, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-cfg.Clock.After(cfg.RenewPeriod):
		}
	}
}

func write(ctx context.Context, cfg Config, c kubernetes.Interface, term uint64, acquired metav1.MicroTime) error {
	leases := c.CoordinationV1().Leases(cfg.Namespace)
	cur, err := leases.Get(ctx, cfg.Name, metav1.GetOptions{})
	now := metav1.NewMicroTime(cfg.Clock.Now())
	secs := int32((cfg.LeaseDuration + time.Second - 1) / time.Second)
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       &cfg.Identity,
		LeaseDurationSeconds: &secs,
		AcquireTime:          &acquired,
		RenewTime:            &now,
		LeaseTransitions:     ptr(int32(min(term, 1<<31-1))),
	}
	ann := map[string]string{TermAnnotation: strconv.FormatUint(term, 10), NoteAnnotation: note}
	opts := metav1.UpdateOptions{FieldManager: "raftelect"}
	switch {
	case apierrors.IsNotFound(err):
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: cfg.Name, Namespace: cfg.Namespace, Annotations: ann},
			Spec:       spec,
		}, metav1.CreateOptions{FieldManager: "raftelect"})
		return err
	case err != nil:
		return err
	}
	if s := cur.Annotations[TermAnnotation]; s != "" {
		if seen, perr := strconv.ParseUint(s, 10, 64); perr == nil && seen > term {
			return fmt.Errorf("the Lease records term %d, later than this leader's %d: a newer leader writes it; not overwriting", seen, term)
		}
	}
	cur.Spec = spec
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	for k, v := range ann {
		cur.Annotations[k] = v
	}
	// cur carries the resourceVersion read above: the update is a
	// compare-and-swap, failing with Conflict if anyone wrote since.
	_, err = leases.Update(ctx, cur, opts)
	return err
}

func ptr[T any](v T) *T { return &v }
