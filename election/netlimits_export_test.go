package election

import "github.com/raftelect/raftelect/transport"

// PeerListenerConns counts the running node's peer-listener connections
// (zero when it is not running), for tests of the connection bounds.
func PeerListenerConns(e *Elector) transport.ConnStats {
	l := e.loop.Load()
	if l == nil || l.tr == nil {
		return transport.ConnStats{}
	}
	return l.tr.ConnStats()
}
