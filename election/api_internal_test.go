package election

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/storage"
)

// lowerLayers are the packages whose types and values the public API must
// not show.
var lowerLayers = []string{
	"github.com/raftelect/raftelect/transport",
	"github.com/raftelect/raftelect/proto",
	"github.com/raftelect/raftelect/internal",
	"go.etcd.io/raft",
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
}

func isLowerLayer(path string) bool {
	for _, f := range lowerLayers {
		if strings.HasPrefix(path, f) {
			return true
		}
	}
	return false
}

// The public API speaks election's own types: no exported field, method
// parameter or result has a type from the transport, the protobuf or gRPC
// packages, raft, or an internal package (test switches live in Config's
// unexported field, internal/nodeopts). The one exception is
// RegisterServices, which registers gRPC services and so takes gRPC's
// registrar. Other packages of this repository (storage, eventlog) are
// public API of their own and are not walked into.
func TestPublicAPI_HasNoLowerLayerTypes(t *testing.T) {
	allowed := map[string]bool{"Config.RegisterServices": true}
	seen := map[reflect.Type]bool{}
	var walk func(where string, typ reflect.Type)
	walk = func(where string, typ reflect.Type) {
		if typ.PkgPath() != "" {
			if isLowerLayer(typ.PkgPath()) {
				t.Errorf("%s has type %s from %s", where, typ, typ.PkgPath())
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

// No exported variable or constant is defined as a lower layer's value:
// godoc would show it as that package's (ErrStoreMismatch once read
// "var ErrStoreMismatch = core.ErrStoreMismatch"), and a user could not
// tell what it is without reading an internal package.
func TestPublicAPI_ValuesAreDefinedHere(t *testing.T) {
	// Known leaks, each still to fix where the value flows out (errors of
	// the core to mark, as Run marks ErrStoreMismatch). Logged, not
	// failed; the test fails when one is fixed and still listed here.
	known := map[string]string{}
	leaks := map[string]bool{}
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	checked := 0
	for _, f := range files {
		imports := map[string]string{} // name in the file -> import path
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			name := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				name = im.Name.Name
			}
			imports[name] = path
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || (gd.Tok != token.VAR && gd.Tok != token.CONST) {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !name.IsExported() {
						continue
					}
					checked++
					var exprs []ast.Expr
					if vs.Type != nil {
						exprs = append(exprs, vs.Type)
					}
					if i < len(vs.Values) {
						exprs = append(exprs, vs.Values[i])
					}
					for _, e := range exprs {
						ast.Inspect(e, func(n ast.Node) bool {
							sel, ok := n.(*ast.SelectorExpr)
							if !ok {
								return true
							}
							if x, ok := sel.X.(*ast.Ident); ok && isLowerLayer(imports[x.Name]) {
								leaks[name.Name] = true
								if why, ok := known[name.Name]; ok {
									t.Logf("known, still to fix: %s is %s.%s (%s)", name.Name, x.Name, sel.Sel.Name, why)
									return true
								}
								t.Errorf("%s: %s is defined as %s.%s from %s: define election's own and match the lower layer's with errors.Is or a conversion",
									fset.Position(name.Pos()), name.Name, x.Name, sel.Sel.Name, imports[x.Name])
							}
							return true
						})
					}
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d exported values found: the walk missed the package's files", checked)
	}
	for name := range known {
		if !leaks[name] {
			t.Errorf("%s is no longer a lower layer's value: take it off the known leaks", name)
		}
	}
}

// ErrStoreMismatch is election's own sentinel, and it matches the errors of
// the core's store identity checks, at start and when the cluster ID is
// learned later, whatever wraps them; their messages (what to do) are kept.
func TestErrStoreMismatch_MatchesTheCoresErrors(t *testing.T) {
	if ErrStoreMismatch == core.ErrStoreMismatch {
		t.Fatal("ErrStoreMismatch is the core's variable, not election's own")
	}
	coreErr := core.CheckStoreIdentity(storage.Identity{Node: "n2"}, "n1", "")
	if coreErr == nil {
		t.Fatal("the core accepted n2's store for n1")
	}
	for _, err := range []error{coreErr, fmt.Errorf("persist raft state: %w", coreErr)} {
		marked := markStoreMismatch(err)
		if !errors.Is(marked, ErrStoreMismatch) || !errors.Is(marked, core.ErrStoreMismatch) {
			t.Errorf("%v: errors.Is(ErrStoreMismatch) = %v, errors.Is(core.ErrStoreMismatch) = %v",
				marked, errors.Is(marked, ErrStoreMismatch), errors.Is(marked, core.ErrStoreMismatch))
		}
		if marked.Error() != err.Error() {
			t.Errorf("the message changed: %q, was %q", marked, err)
		}
		if again := markStoreMismatch(marked); again != marked {
			t.Errorf("marked twice: %v", again)
		}
	}
	other := errors.New("disk full")
	if markStoreMismatch(other) != other || markStoreMismatch(nil) != nil {
		t.Error("an error that is not a store mismatch was changed")
	}
}
