package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// argoCDHealthScript is the health check shipped for Argo CD's argocd-cm.
var argoCDHealthScript = filepath.Join("..", "config", "argocd", "health.lua")

// argoCDHealth is what an Argo CD health script returns.
type argoCDHealth struct {
	Status, Message string
}

// argoCDStatus is the Argo CD health that matches each kstatus status: the
// two tools must agree.
var argoCDStatus = map[kstatus.Status]string{
	kstatus.InProgressStatus: "Progressing",
	kstatus.CurrentStatus:    "Healthy",
	kstatus.FailedStatus:     "Degraded",
}

// runArgoCDHealth runs the health script on an object's JSON as Argo CD
// runs a custom health check: the object is the global obj, and only Lua's
// base and table libraries are open.
func runArgoCDHealth(objJSON []byte) (argoCDHealth, error) {
	script, err := os.ReadFile(argoCDHealthScript)
	if err != nil {
		return argoCDHealth{}, fmt.Errorf("reading the health script: %w", err)
	}
	var obj any
	if err := json.Unmarshal(objJSON, &obj); err != nil {
		return argoCDHealth{}, fmt.Errorf("decoding the object: %w", err)
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for name, open := range map[string]lua.LGFunction{lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(open), Protect: true}, lua.LString(name)); err != nil {
			return argoCDHealth{}, fmt.Errorf("opening Lua library %q: %w", name, err)
		}
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(string(script)); err != nil {
		return argoCDHealth{}, fmt.Errorf("running the health script: %w", err)
	}
	result, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return argoCDHealth{}, fmt.Errorf("the health script returned %s, not a table", L.Get(-1).Type())
	}
	return argoCDHealth{Status: lua.LVAsString(result.RawGetString("status")), Message: lua.LVAsString(result.RawGetString("message"))}, nil
}

// toLua converts decoded JSON into Lua values: objects and arrays become
// tables, null becomes nil.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetString(key, toLua(L, item))
		}
		return t
	case []any:
		t := L.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

// TestArgoCDHealthAgreesWithKstatus runs the health script and kstatus on
// the same objects: the health script must read every state as kstatus
// does, except a SandboxSet the controller has not yet given conditions,
// which kstatus takes for Current and the script rightly does not.
func TestArgoCDHealthAgreesWithKstatus(t *testing.T) {
	sbs := func(generation int64, status *agentsv1alpha1.SandboxSetStatus) *agentsv1alpha1.SandboxSet {
		s := &agentsv1alpha1.SandboxSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: agentsv1alpha1.GroupVersion.String(), Kind: "SandboxSet"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "demo", Generation: generation},
			Spec:       agentsv1alpha1.SandboxSetSpec{Replicas: ptr.To[int32](2)},
		}
		if status != nil {
			s.Status = *status
		}
		return s
	}
	computed := func(generation, observed int64, p pool, createErr error) *agentsv1alpha1.SandboxSet {
		s := sbs(generation, nil)
		s.Status = computeStatus(s, p, "new", "sel", createErr)
		s.Status.ObservedGeneration = observed
		return s
	}
	full := pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0)}}
	quota := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "demo-x", errors.New("exceeded quota: pods"))
	tests := []struct {
		name        string
		obj         *agentsv1alpha1.SandboxSet
		noStatus    bool // as stored before the controller's first write
		wantKstatus kstatus.Status
		wantArgo    argoCDHealth
	}{{
		name:        "no status yet",
		obj:         sbs(1, nil),
		noStatus:    true,
		wantKstatus: kstatus.CurrentStatus,
		wantArgo:    argoCDHealth{"Progressing", "Waiting for the SandboxSet controller to observe generation 1"},
	}, {
		name:        "a status without conditions",
		obj:         sbs(1, &agentsv1alpha1.SandboxSetStatus{ObservedGeneration: 1}),
		wantKstatus: kstatus.CurrentStatus,
		wantArgo:    argoCDHealth{"Progressing", "Waiting for the SandboxSet controller to report the pool Ready"},
	}, {
		name:        "a spec the controller has not seen",
		obj:         computed(2, 1, full, nil),
		wantKstatus: kstatus.InProgressStatus,
		wantArgo:    argoCDHealth{"Progressing", "Waiting for the SandboxSet controller to observe generation 2"},
	}, {
		name:        "filling",
		obj:         computed(1, 1, pool{pendingCreates: 2}, nil),
		wantKstatus: kstatus.InProgressStatus,
		wantArgo:    argoCDHealth{"Progressing", "SandboxesCreating: 0 of 2 sandboxes are available"},
	}, {
		name:        "full",
		obj:         computed(1, 1, full, nil),
		wantKstatus: kstatus.CurrentStatus,
		wantArgo:    argoCDHealth{"Healthy", "all 2 sandboxes are available"},
	}, {
		name:        "quota",
		obj:         computed(1, 1, pool{active: full.active[:1]}, quota),
		wantKstatus: kstatus.FailedStatus,
		wantArgo:    argoCDHealth{"Degraded", `QuotaExceeded: cannot create sandbox Pods: pods "demo-x" is forbidden: exceeded quota: pods`},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := toUnstructured(t, tt.obj)
			if tt.noStatus {
				unstructured.RemoveNestedField(u.Object, "status")
			}
			res, err := kstatus.Compute(u)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.wantKstatus {
				t.Errorf("kstatus = %s %q, want %s", res.Status, res.Message, tt.wantKstatus)
			}
			objJSON, err := u.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			got, err := runArgoCDHealth(objJSON)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantArgo {
				t.Errorf("Argo CD health = %+v, want %+v", got, tt.wantArgo)
			}
			if tt.obj.Status.Conditions != nil && got.Status != argoCDStatus[res.Status] {
				t.Errorf("Argo CD reads %s where kstatus reads %s", got.Status, res.Status)
			}
		})
	}
}

// TestArgoCDComponent renders config/argocd as kustomize would in an Argo
// CD install, and checks that argocd-cm gets the script under the key Argo
// CD looks it up by, and keeps its own data.
func TestArgoCDComponent(t *testing.T) {
	dir := t.TempDir()
	component, err := filepath.Abs(filepath.Dir(argoCDHealthScript))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"argocd-cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  url: https://argocd.example.com\n",
		"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: argocd\n" +
			"resources:\n- argocd-cm.yaml\ncomponents:\n- component\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// kustomize loads components only from within the kustomization's root.
	if err := os.Symlink(component, filepath.Join(dir, "component")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "kustomize", "--load-restrictor=LoadRestrictionsNone", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(out, &cm); err != nil {
		t.Fatalf("decoding the rendered argocd-cm: %v\n%s", err, out)
	}
	script, err := os.ReadFile(argoCDHealthScript)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Name != "argocd-cm" || cm.Namespace != "argocd" || cm.Data["url"] != "https://argocd.example.com" {
		t.Errorf("rendered %s/%s with data %v: want argocd/argocd-cm, its url kept", cm.Namespace, cm.Name, cm.Data)
	}
	if got := cm.Data["resource.customizations.health.agents.kruise.io_SandboxSet"]; got != string(script) {
		t.Errorf("argocd-cm's SandboxSet health check is %q, want health.lua", got)
	}
}
