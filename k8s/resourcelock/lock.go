package resourcelock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/clock"

	"github.com/raftelect/raftelect/election"
)

// IdentityLabel is the election.Config label that names a node's client-go
// identity to the other nodes, when it is not the node name.
const IdentityLabel = "raftelect.io/identity"

// controller-runtime's defaults, which client-go users commonly copy.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// otherHolderLeaseSeconds is the LeaseDurationSeconds of a record naming
// another node: a year, because such a record holds until raftelect elects
// someone else, and that changes the record.
const otherHolderLeaseSeconds = 365 * 24 * 3600

// groupResource names the "resource" in Conflict and AlreadyExists errors.
var groupResource = schema.GroupResource{Group: "raftelect.io", Resource: "leaderelection"}

// stoppedLeadingEvent is what client-go's LeaderElector passes to
// RecordEvent when its renew loop has ended.
const stoppedLeadingEvent = "stopped leading"

// Config configures a Lock.
type Config struct {
	// Elector is this node's raftelect node. The Lock reads its state; run
	// it (Elector.Run) as usual.
	Elector *election.Elector
	// Identity is this node's client-go identity (default: the node name).
	// If it differs from the node name, the election.Config must carry the
	// label IdentityLabel with this value, so that other nodes can name the
	// holder.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod must be those given to
	// the LeaderElector (or the controller-runtime manager), and the same on
	// every node; zero takes controller-runtime's defaults. See the package
	// documentation for what each means here.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Logger receives client-go's leader election events (default: discard).
	Logger *slog.Logger
	// Clock is the Lock's notion of now, for the handover delay and the
	// wait after a lost term (default: the real clock), as client-go's
	// LeaderElectionConfig.Clock is the LeaderElector's. It must run at the
	// rate of the real clock, with which the Elector stamps Lease.Start;
	// tests inject a fake clock to step through the delays.
	Clock clock.PassiveClock
}

// Lock is a client-go resource lock backed by raftelect. It is safe for
// concurrent use, but serves one LeaderElector at a time.
type Lock struct {
	e        *election.Elector
	identity string
	leaseDur time.Duration
	renew    time.Duration
	retry    time.Duration
	log      *slog.Logger
	clock    clock.PassiveClock

	mu sync.Mutex
	// read is the record the last Get returned, encoded: the compare half
	// of compare-and-swap, as the LeaseLock keeps the Lease it last got.
	read []byte
	// held is the term in which client-go on this node was granted
	// leadership, 0 if it holds none; record is what it last wrote.
	held   uint64
	record rl.LeaderElectionRecord
	// lostUntil: a granted term ended; until then, refuse to grant another,
	// so that client-go's renew loop fails until it gives up.
	lostUntil time.Time
	// lastOther is the identity of the last other node known as leader.
	lastOther string
}

var _ rl.Interface = (*Lock)(nil)

// New checks cfg and returns a Lock.
func New(cfg Config) (*Lock, error) {
	if cfg.Elector == nil {
		return nil, errors.New("resourcelock: Config.Elector is nil; pass this node's *election.Elector")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	var errs []error
	if cfg.RetryPeriod < 0 {
		errs = append(errs, fmt.Errorf("retry period %v must be positive", cfg.RetryPeriod))
	}
	if float64(cfg.RenewDeadline) <= 1.2*float64(cfg.RetryPeriod) {
		errs = append(errs, fmt.Errorf("renew deadline %v must be more than 1.2 x the retry period %v (client-go's rule)", cfg.RenewDeadline, cfg.RetryPeriod))
	}
	if cfg.LeaseDuration <= cfg.RenewDeadline {
		errs = append(errs, fmt.Errorf("lease duration %v must be more than the renew deadline %v (client-go's rule)", cfg.LeaseDuration, cfg.RenewDeadline))
	}
	name := cfg.Elector.Name()
	if cfg.Identity == "" {
		cfg.Identity = name
	}
	if cfg.Identity != name {
		if got := cfg.Elector.Status().Labels[IdentityLabel]; got != cfg.Identity {
			errs = append(errs, fmt.Errorf("identity %q differs from the node name %q: set the label %s=%q in the election config so that other nodes can name this holder", cfg.Identity, name, IdentityLabel, cfg.Identity))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("resourcelock: %w", err)
	}
	l := &Lock{
		e: cfg.Elector, identity: cfg.Identity, leaseDur: cfg.LeaseDuration,
		renew: cfg.RenewDeadline, retry: cfg.RetryPeriod, log: cfg.Logger, clock: cfg.Clock,
	}
	if l.clock == nil {
		l.clock = clock.RealClock{}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// StopBound is how long after its raftelect lease ends client-go's holder
// on a node can still act: RetryPeriod + RenewDeadline.
func (l *Lock) StopBound() time.Duration { return l.retry + l.renew }

// HandoverDelay is how long a node must hold its raftelect lease before its
// client-go may acquire: StopBound plus one RetryPeriod of slack.
func (l *Lock) HandoverDelay() time.Duration { return l.renew + 2*l.retry }

// Token returns the fencing token (the raft term) of the leadership that
// client-go on this node holds through this Lock: pass it with writes to
// external systems, which should reject tokens lower than the highest they
// have seen. It stays set until client-go's holder has been told to stop,
// so leader work can fence its last writes too.
func (l *Lock) Token() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held, l.held != 0
}

// Get returns the record as this node sees it now; see the package
// documentation. It is a pure read: it changes nothing about who holds
// what, and only remembers the record it returned, for the next Update to
// compare against (as client-go's LeaseLock remembers the Lease it got). It
// never fails: a node that knows no leader reports the last one it knew, or
// none.
func (l *Lock) Get(context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, raw, err := l.view(l.clock.Now())
	if err != nil {
		return nil, nil, err
	}
	l.read = raw
	return &rec, raw, nil
}

// view computes the record as this node sees it at now, encoded too. Its
// only effect is to remember the last other leader it saw, for naming it
// once this node knows none. Callers hold l.mu.
func (l *Lock) view(now time.Time) (rl.LeaderElectionRecord, []byte, error) {
	lease, holds := l.e.Lease()
	leader := l.e.Leader()
	var rec rl.LeaderElectionRecord
	switch {
	case holds && l.held != 0 && lease.Token == l.held:
		rec = l.record
	case holds && l.held == 0 && !now.Before(l.lostUntil) && now.Sub(lease.Start) >= l.HandoverDelay():
		// Free for this node's client-go to take, in this term only.
		rec = rl.LeaderElectionRecord{LeaseDurationSeconds: l.seconds(l.leaseDur), LeaderTransitions: int(lease.Token)}
	default:
		if leader.Name != "" && leader.Name != l.e.Name() {
			l.lastOther = l.identityOf(leader.Name)
		}
		rec = rl.LeaderElectionRecord{HolderIdentity: l.lastOther, LeaderTransitions: int(leader.Term)}
		if rec.HolderIdentity != "" {
			rec.LeaseDurationSeconds = otherHolderLeaseSeconds
		}
	}
	raw, err := json.Marshal(rec)
	return rec, raw, err
}

// Create fails with AlreadyExists: the record always exists.
func (l *Lock) Create(context.Context, rl.LeaderElectionRecord) error {
	return apierrors.NewAlreadyExists(groupResource, "raftelect")
}

// Update writes ler if the compare-and-swap holds; see the package
// documentation.
func (l *Lock) Update(ctx context.Context, ler rl.LeaderElectionRecord) error {
	switch ler.HolderIdentity {
	case l.identity:
		return l.take(ler)
	case "":
		return l.release(ctx)
	default:
		return apierrors.NewBadRequest(fmt.Sprintf("resourcelock: %s cannot write %q as holder: only raftelect decides who leads", l.identity, ler.HolderIdentity))
	}
}

func (l *Lock) conflict(format string, args ...any) error {
	return apierrors.NewConflict(groupResource, "raftelect", fmt.Errorf(format, args...))
}

// take acquires or renews leadership for this node, if the record is the
// one the last Get returned.
func (l *Lock) take(ler rl.LeaderElectionRecord) error {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	lease, holds := l.e.Lease()
	l.checkHeld(now, lease, holds)
	if l.read == nil {
		return l.conflict("%s: Update before any Get: call Get first, the update compares against the record it returned", l.identity)
	}
	cur, raw, err := l.view(now)
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, l.read) {
		return l.conflict("the record changed since the last Get (now: holder %q, term %d): %s", cur.HolderIdentity, cur.LeaderTransitions, l.refusal(now, lease, holds))
	}
	switch {
	case l.held != 0:
		// The record read was this node's own, in a term it still holds.
		l.record = ler // a renewal
	case cur.HolderIdentity == "" && cur.LeaseDurationSeconds != 0:
		l.held, l.record = lease.Token, ler
		l.log.Info("client-go leadership granted", "identity", l.identity, "token", lease.Token)
	default:
		return l.conflict("%s", l.refusal(now, lease, holds))
	}
	// What client-go compares next is what it wrote, as with a Lease.
	if l.read, err = json.Marshal(l.record); err != nil {
		return err
	}
	return nil
}

// refusal says why this node cannot take leadership now.
func (l *Lock) refusal(now time.Time, lease election.Lease, holds bool) string {
	switch {
	case !holds:
		leader := l.e.Leader()
		if leader.Name == "" {
			return fmt.Sprintf("no raftelect leader (term %d): %s cannot lead", leader.Term, l.identity)
		}
		if leader.Name == l.e.Name() {
			return fmt.Sprintf("%s is raftelect leader of term %d but holds no lease (no quorum acknowledged it recently)", l.identity, leader.Term)
		}
		return fmt.Sprintf("%s does not hold the raftelect lease; the raftelect leader is %s (term %d)", l.identity, leader.Name, leader.Term)
	case now.Before(l.lostUntil):
		return fmt.Sprintf("%s lost leadership recently; waiting %v for client-go to stop", l.identity, l.lostUntil.Sub(now).Round(time.Millisecond))
	case now.Sub(lease.Start) < l.HandoverDelay():
		return fmt.Sprintf("%s holds the raftelect lease of term %d but waits %v more (handover delay %v) for a previous holder to stop",
			l.identity, lease.Token, (l.HandoverDelay() - now.Sub(lease.Start)).Round(time.Millisecond), l.HandoverDelay())
	}
	return fmt.Sprintf("%s holds the raftelect lease of term %d and may take it: Get again", l.identity, lease.Token)
}

// checkHeld notices that the term granted to client-go is over. Then no
// new grant is made for HandoverDelay (or until client-go says it stopped):
// client-go's renew loop, which began failing no earlier than now, must
// fail until it gives up, rather than carry on in a later term across a
// gap in which another node may have led.
func (l *Lock) checkHeld(now time.Time, lease election.Lease, holds bool) {
	if l.held == 0 || (holds && lease.Token == l.held) {
		return
	}
	l.log.Info("raftelect lease ended under client-go's leadership", "identity", l.identity, "token", l.held)
	l.held, l.record = 0, rl.LeaderElectionRecord{}
	l.lostUntil = now.Add(l.HandoverDelay())
}

// release gives client-go's leadership up and, if this node still holds
// the raftelect lease, hands raftelect leadership to a peer.
func (l *Lock) release(ctx context.Context) error {
	l.mu.Lock()
	held := l.held
	l.held, l.record = 0, rl.LeaderElectionRecord{}
	l.mu.Unlock()
	lease, holds := l.e.Lease()
	if held == 0 || !holds || lease.Token != held {
		return nil // nothing of ours to release
	}
	l.log.Info("client-go released leadership; transferring raftelect leadership", "identity", l.identity, "token", held)
	if err := l.e.Transfer(ctx, ""); err != nil && l.e.IsLeader() {
		return fmt.Errorf("resourcelock: released, but raftelect leadership was not transferred: %w", err)
	}
	return nil
}

// RecordEvent logs client-go's event. "stopped leading" means client-go's
// renew loop has ended: its holder has stopped, so leadership lost earlier
// no longer needs waiting out, and a leadership still granted is over.
func (l *Lock) RecordEvent(s string) {
	l.log.Info("leader election event", "identity", l.identity, "event", s)
	if s != stoppedLeadingEvent {
		return
	}
	l.mu.Lock()
	l.held, l.record = 0, rl.LeaderElectionRecord{}
	l.lostUntil = time.Time{}
	l.mu.Unlock()
}

// Identity returns this node's client-go identity.
func (l *Lock) Identity() string { return l.identity }

// Describe names the lock in client-go's logs.
func (l *Lock) Describe() string {
	return fmt.Sprintf("raftelect/%s", l.e.Name())
}

// identityOf returns the client-go identity of the named node: its
// IdentityLabel once it has sent its labels, else its name.
func (l *Lock) identityOf(name string) string {
	for _, p := range l.e.Status().Peers {
		if p.Name == name {
			if id := p.Labels[IdentityLabel]; id != "" {
				return id
			}
			break
		}
	}
	return name
}

func (l *Lock) seconds(d time.Duration) int { return int(d / time.Second) }
