// Package resourcelock lets client-go's leader election, and with it
// controller-runtime's manager, elect one leader across clusters through
// raftelect. Lock implements client-go's resourcelock.Interface on top of an
// *election.Elector instead of a Lease object in one API server:
//
//	lock, _ := resourcelock.New(resourcelock.Config{Elector: elector})
//	mgr, _ := ctrl.NewManager(restConfig, ctrl.Options{
//		LeaderElection:                      true,
//		LeaderElectionResourceLockInterface: lock,
//	})
//
// # The record
//
// Get returns a LeaderElectionRecord built from this node's raftelect state.
// Its version (what a Lease's resourceVersion is to the LeaseLock) is the
// raft term, which is also the fencing token. HolderIdentity is:
//
//   - this node's identity while client-go on this node holds leadership
//     through this Lock: it acquired it in the current raftelect term and
//     this node's raftelect lease of that term still holds;
//   - "" when this node holds the raftelect lease, has held it for at least
//     the handover delay, and its client-go does not hold it yet: the one
//     state in which an Update naming this node succeeds;
//   - otherwise the identity of the raftelect leader this node knows of
//     (the peer's label raftelect.io/identity, else its node name), or of
//     the last one it knew when it knows none now. On a follower this names
//     the node that holds client-go leadership or will hold it once its
//     handover delay has passed.
//
// Get is a pure read, as on a Lease: it changes nothing about who holds
// what (a term that ended is noticed by the next Update, and Token keeps
// reporting it until then), and only remembers the record it returned.
// Create always fails with AlreadyExists: the record is the raft cluster, so
// it always exists. Update keeps the compare-and-swap meaning of the
// LeaseLock, whose Update sends the resourceVersion of the Lease the last
// Get returned: it fails with Conflict unless the record is, when Update
// runs, exactly the one the last Get returned (after a successful Update,
// the one it wrote), and an Update with no Get before it fails. Then:
//
//   - naming this node as holder, it succeeds only if this node holds the
//     raftelect lease now and has held it for at least HandoverDelay (the
//     record read was either this node's own, a renewal, or the free
//     record with an empty holder). Otherwise it fails with a Conflict error, at once:
//     when another node leads, when no node does, and when this node's lease
//     of the granted term ended (even if this node has won a later term: once
//     a granted term ends, every Update naming this node fails for
//     HandoverDelay, or until client-go reports that it stopped leading, so
//     that client-go's leader stops rather than carry on across the gap);
//   - with an empty holder (client-go's ReleaseOnCancel), on the holder, it
//     gives the leadership up and hands raftelect leadership to an up-to-date
//     peer (Elector.Transfer), waiting at most until ctx ends;
//   - naming any other holder, it fails: only raftelect decides who leads.
//
// # What client-go's durations mean here
//
// Give the Lock the same LeaseDuration, RenewDeadline and RetryPeriod as the
// LeaderElector or the manager (leaving all of them at zero gives both
// controller-runtime's defaults: 15s, 10s, 2s), and the same on every node.
//
//   - RetryPeriod: how often client-go calls Get and Update, on the leader to
//     renew and elsewhere to try to acquire.
//   - RenewDeadline: how long client-go's leader goes on retrying failed
//     renewals before it gives up, cancels OnStartedLeading's context and
//     calls OnStoppedLeading. A renewal fails as soon as the raftelect lease
//     ends, so here it is only the time an old holder keeps acting: keep it
//     a few RetryPeriods (it must exceed 1.2 x RetryPeriod).
//   - LeaseDuration: how long a candidate trusts a record it saw unchanged.
//     It plays no part in safety. Records naming another node carry a
//     LeaseDurationSeconds of a year, because such a record is valid until
//     raftelect elects someone else, which changes the record; candidates
//     then do not call Update in vain. It must exceed RenewDeadline.
//
// # The bound
//
// The raftelect lease of the holder ends before any other node can be
// elected (see the election package and docs/safety.md). After it ends,
// client-go's holder on that node notices at its next renewal (within
// RetryPeriod) and gives up RenewDeadline after the poll that failed began:
// it stops acting within
//
//	StopBound = RetryPeriod + RenewDeadline
//
// of the end of its raftelect lease (plus the time to run a callback). A new
// raftelect leader lets its client-go acquire only after holding its own
// lease for
//
//	HandoverDelay = RenewDeadline + 2 x RetryPeriod
//
// (StopBound plus one RetryPeriod of slack for scheduling and clock-rate
// drift), so the new holder starts after the old one stopped. A takeover
// after the holder stops or is cut off therefore takes the raftelect
// failover (a few heartbeats after a graceful stop, which transfers; about
// an election timeout after a crash or a partition), plus HandoverDelay,
// plus at most one acquire period of client-go, RetryPeriod x 2.2.
//
// # What is guaranteed and what is not
//
// Guaranteed, under the election package's assumptions (clock rates within
// its drift margin, raft state persisted or the vote guard covering its
// loss): at any instant at most one LeaderElector, across all nodes, is
// between OnStartedLeading and the cancellation of its context, provided
// every node uses the same RenewDeadline and RetryPeriod in the Lock and in
// client-go, and one LeaderElector at a time uses a Lock. Token returns the
// fencing token (the raft term) of the leadership client-go holds; it
// strictly increases from one holder to the next.
//
// Not guaranteed: that a process stops acting when its context is cancelled
// (controller-runtime exits the process when leadership is lost; your own
// runnables must honour ctx), nor anything about a process paused (GC,
// SIGSTOP) for longer than the slack; fence writes to external systems with
// Token. A node's client-go never leads while raftelect has no leader, and a
// node whose raftelect lease is shorter than HandoverDelay never lets its
// client-go lead: leadership that flaps faster than that is not handed to
// the application at all.
package resourcelock
