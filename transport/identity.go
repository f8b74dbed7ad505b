package transport

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callerCert returns the caller's verified client certificate, or nil when
// the transport runs without TLS.
func callerCert(ctx context.Context) (*x509.Certificate, error) {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, nil
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	return ti.State.VerifiedChains[0][0], nil
}

// callerName returns the CommonName of the caller's verified client
// certificate, or "" when the transport runs without TLS.
func callerName(ctx context.Context) (string, error) {
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return "", err
	}
	return cert.Subject.CommonName, nil
}

// memberName names the member the caller's certificate identifies: the
// member whose identity (its name, unless configured) is the certificate's
// CommonName or one of its DNS SANs. For a certificate of no member it
// returns "" and the CommonName, for the error; without TLS, "" and "".
func (t *Transport) memberName(ctx context.Context) (member, commonName string, err error) {
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return "", "", err
	}
	if p := t.byIdentity[cert.Subject.CommonName]; p != nil {
		return p.Name, cert.Subject.CommonName, nil
	}
	for _, san := range cert.DNSNames {
		if p := t.byIdentity[san]; p != nil {
			return p.Name, cert.Subject.CommonName, nil
		}
	}
	return "", cert.Subject.CommonName, nil
}

// CallerName returns the node name (CommonName) in the verified client
// certificate of the caller of a gRPC handler on the peer server, or "" when
// the transport runs without TLS. Services added with
// Options.RegisterServices use it to authorize callers.
func CallerName(ctx context.Context) (string, error) { return callerName(ctx) }
