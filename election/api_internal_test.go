package election

import (
	"reflect"
	"strings"
	"testing"
)

// The public API speaks election's own types: no exported field, method
// parameter or result has a type from the transport, the protobuf or gRPC
// packages, raft, or an internal package (test switches live in Config's
// unexported field, internal/nodeopts). The one exception is
// RegisterServices, which registers gRPC services and so takes gRPC's
// registrar. Other packages of this repository (storage, eventlog) are
// public API of their own and are not walked into.
func TestPublicAPI_HasNoLowerLayerTypes(t *testing.T) {
	forbidden := []string{
		"github.com/raftelect/raftelect/transport",
		"github.com/raftelect/raftelect/proto",
		"github.com/raftelect/raftelect/internal",
		"go.etcd.io/raft",
		"google.golang.org/grpc",
		"google.golang.org/protobuf",
	}
	allowed := map[string]bool{"Config.RegisterServices": true}
	seen := map[reflect.Type]bool{}
	var walk func(where string, typ reflect.Type)
	walk = func(where string, typ reflect.Type) {
		if typ.PkgPath() != "" {
			for _, f := range forbidden {
				if strings.HasPrefix(typ.PkgPath(), f) {
					t.Errorf("%s has type %s from %s", where, typ, typ.PkgPath())
				}
			}
			if typ.PkgPath() != reflect.TypeFor[Config]().PkgPath() || seen[typ] {
				return // another package's named type, or walked already
			}
			seen[typ] = true
		}
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
			walk(where, typ.Elem())
		case reflect.Map:
			walk(where, typ.Key())
			walk(where, typ.Elem())
		case reflect.Func:
			for i := range typ.NumIn() {
				walk(where, typ.In(i))
			}
			for i := range typ.NumOut() {
				walk(where, typ.Out(i))
			}
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				name := typ.Name() + "." + f.Name
				if f.IsExported() && !allowed[name] {
					walk(name, f.Type)
				}
			}
		case reflect.Interface:
			for i := range typ.NumMethod() {
				walk(typ.Name()+"."+typ.Method(i).Name, typ.Method(i).Type)
			}
		}
		if typ.Kind() != reflect.Interface && typ.Name() != "" {
			for _, ptr := range []reflect.Type{typ, reflect.PointerTo(typ)} {
				for i := range ptr.NumMethod() {
					m := ptr.Method(i)
					walk(typ.Name()+"."+m.Name, m.Type)
				}
			}
		}
	}
	for _, v := range []any{
		Config{}, Elector{}, Status{}, CheckResult{}, Event{}, Lease{}, LeaderInfo{},
		(*Metrics)(nil), (*CertificateMetrics)(nil),
		New, NodeID, CallerMember,
	} {
		walk("API", reflect.TypeOf(v))
	}
	if !seen[reflect.TypeFor[PeerStatus]()] || !seen[reflect.TypeFor[ConnectionLimits]()] {
		t.Fatal("the walk did not reach the types it should (PeerStatus, ConnectionLimits)")
	}
}
