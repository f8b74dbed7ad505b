package clustercreds

import (
	"context"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigFetcher serves a kubeconfig for this node's cluster built from
// files in the pod: a ServiceAccount token (best a projected one, short-
// lived and with an audience, bound to a ServiceAccount whose RBAC is what
// the leader needs there) and the API server's CA. The kubelet rotates a
// projected token in place; each Fetch reads the files again.
type KubeconfigFetcher struct {
	// Cluster names the context in the kubeconfig (for example the region).
	Cluster string
	// Server is the API server's URL as the other clusters reach it (not
	// kubernetes.default.svc, which only resolves inside this cluster).
	Server string
	// CAFile is the API server's CA bundle (PEM).
	CAFile string
	// TokenFile holds the ServiceAccount token.
	TokenFile string
	// TokenTTL is how long a token read from TokenFile is trusted to stay
	// valid (the projected volume's expirationSeconds; the kubelet renews
	// at 80% of it). Zero: no expiry is announced.
	TokenTTL time.Duration
}

// Fetch builds the kubeconfig.
func (k KubeconfigFetcher) Fetch(context.Context, string) (Payload, error) {
	ca, err := os.ReadFile(k.CAFile)
	if err != nil {
		return Payload{}, fmt.Errorf("read the API server CA: %w", err)
	}
	tok, err := os.ReadFile(k.TokenFile)
	if err != nil {
		return Payload{}, fmt.Errorf("read the ServiceAccount token: %w", err)
	}
	st, err := os.Stat(k.TokenFile)
	if err != nil {
		return Payload{}, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[k.Cluster] = &clientcmdapi.Cluster{Server: k.Server, CertificateAuthorityData: ca}
	cfg.AuthInfos[k.Cluster] = &clientcmdapi.AuthInfo{Token: string(tok)}
	cfg.Contexts[k.Cluster] = &clientcmdapi.Context{Cluster: k.Cluster, AuthInfo: k.Cluster}
	cfg.CurrentContext = k.Cluster
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return Payload{}, err
	}
	p := Payload{Data: data}
	if k.TokenTTL > 0 {
		// The kubelet wrote the token at the file's modification time.
		p.Expires = st.ModTime().Add(k.TokenTTL)
	}
	return p, nil
}

// RESTConfig turns a kubeconfig payload into a client configuration for
// that cluster.
func RESTConfig(p Payload) (*rest.Config, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(p.Data)
	if err != nil {
		return nil, fmt.Errorf("clustercreds: payload of %s is not a kubeconfig: %w", p.Node, err)
	}
	return cfg, nil
}
