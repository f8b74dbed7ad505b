package clustercreds_test

import (
	"context"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/raftelect/raftelect/k8s/clustercreds"
	"github.com/raftelect/raftelect/k8s/internal/controlplanes"
)

// TestTokenRequestKubeconfigActsAsTheServiceAccount: against a real API
// server, the fetcher's kubeconfig carries a fresh token of the configured
// ServiceAccount (the API server says who it is), with that account's
// rights and no more, and announces the token's expiry.
func TestTokenRequestKubeconfigActsAsTheServiceAccount(t *testing.T) {
	p := controlplanes.Start(t, "c1")[0]
	ctx := context.Background()
	admin := p.Client
	const ns, sa = "default", "raftelect-leader"
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "leader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "leader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "leader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	f := clustercreds.TokenRequestFetcher{
		Cluster: "c1", Server: p.Config.Host, CA: p.Config.CAData, Client: admin,
		Namespace: ns, ServiceAccount: sa, TTL: 15 * time.Minute,
	}
	before := time.Now()
	payload, err := f.Fetch(ctx, "n2")
	if err != nil {
		t.Fatal(err)
	}
	if d := payload.Expires.Sub(before); d < 10*time.Minute || d > 16*time.Minute {
		t.Errorf("payload expires %v after the request; the token was asked for 15m", d.Round(time.Second))
	}
	rc, err := clustercreds.RESTConfig(payload)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	who, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the served kubeconfig does not authenticate: %v", err)
	}
	if got, want := who.Status.UserInfo.Username, "system:serviceaccount:"+ns+":"+sa; got != want {
		t.Errorf("the served kubeconfig acts as %q, want %q", got, want)
	}
	if _, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the ServiceAccount may list configmaps, but: %v", err)
	}
	if _, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets with the served kubeconfig: %v, want Forbidden (it must carry the ServiceAccount's rights only)", err)
	}
	t.Logf("served a kubeconfig for %s, expiring %v after the request", who.Status.UserInfo.Username, payload.Expires.Sub(before).Round(time.Second))

	// A missing ServiceAccount is an error that says what to fix.
	f.ServiceAccount = "nobody"
	if _, err := f.Fetch(ctx, "n2"); err == nil {
		t.Error("a token for a missing ServiceAccount was served")
	}
}
