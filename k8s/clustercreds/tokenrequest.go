package clustercreds

import (
	"context"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TokenRequestFetcher serves a kubeconfig for this node's cluster with a
// fresh token of a ServiceAccount, requested from this cluster's API server
// (the TokenRequest API) for every Fetch: short-lived, bound to the
// audiences given, never stored. The ServiceAccount's RBAC is what the
// leader may do in this cluster; the node's own client needs only
// "create" on serviceaccounts/token for that one ServiceAccount.
type TokenRequestFetcher struct {
	// Cluster names the context in the kubeconfig (for example the region).
	Cluster string
	// Server is the API server's URL as the other clusters reach it.
	Server string
	// CA is the API server's CA bundle (PEM), written into the kubeconfig.
	CA []byte
	// Client talks to this cluster's API server (in a pod: the pod's own
	// ServiceAccount, rest.InClusterConfig).
	Client kubernetes.Interface
	// Namespace and ServiceAccount name the account whose token is served.
	Namespace, ServiceAccount string
	// Audiences of the token (default: the API server's own).
	Audiences []string
	// TTL is the token's requested lifetime (default 1h; the API server
	// may shorten it, and refuses less than 10 minutes).
	TTL time.Duration
}

// Fetch requests a token and builds the kubeconfig; its expiry is the
// token's, so the leader's Client fetches again before it runs out.
func (f TokenRequestFetcher) Fetch(ctx context.Context, _ string) (Payload, error) {
	if f.Client == nil || f.ServiceAccount == "" || f.Namespace == "" || f.Server == "" {
		return Payload{}, errors.New("clustercreds: TokenRequestFetcher needs Client, Namespace, ServiceAccount and Server")
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	secs := int64(ttl / time.Second)
	tr, err := f.Client.CoreV1().ServiceAccounts(f.Namespace).CreateToken(ctx, f.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: f.Audiences, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return Payload{}, fmt.Errorf("request a token for ServiceAccount %s/%s (this node's client needs create on serviceaccounts/token): %w", f.Namespace, f.ServiceAccount, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[f.Cluster] = &clientcmdapi.Cluster{Server: f.Server, CertificateAuthorityData: f.CA}
	cfg.AuthInfos[f.Cluster] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[f.Cluster] = &clientcmdapi.Context{Cluster: f.Cluster, AuthInfo: f.Cluster}
	cfg.CurrentContext = f.Cluster
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return Payload{}, err
	}
	return Payload{Data: data, Expires: tr.Status.ExpirationTimestamp.Time}, nil
}
