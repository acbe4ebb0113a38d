package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestPodReviews sends an AdmissionReview through podReviews and checks
// that the handler gets the Pods controller-runtime's decoder would have
// given it, and that the answer is a v1 AdmissionReview the API server
// reads.
func TestPodReviews(t *testing.T) {
	sent, body := claimReview(t)

	decoder := admission.NewDecoder(clientgoscheme.Scheme)
	var got admission.Request
	h := podReviews{log: logr.Discard(), webhook: &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		got = req
		return admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels/agents.kruise.io~1state", Value: "claimed"})
	})}}

	answer := serve(t, h, "application/json", body)
	for name, pair := range map[string][2]runtime.RawExtension{"object": {got.Object, sent.Object}, "oldObject": {got.OldObject, sent.OldObject}} {
		want := &corev1.Pod{}
		if err := decoder.DecodeRaw(pair[1], want); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(pair[0].Object, want) {
			t.Errorf("%s: the handler got %+v, want %+v as controller-runtime decodes it", name, pair[0].Object, want)
		}
	}
	got.Object, got.OldObject, sent.Object, sent.OldObject = runtime.RawExtension{}, runtime.RawExtension{}, runtime.RawExtension{}, runtime.RawExtension{}
	if !equality.Semantic.DeepEqual(got.AdmissionRequest, sent) {
		t.Errorf("the handler got request %+v, want %+v", got.AdmissionRequest, sent)
	}
	if answer.APIVersion != "admission.k8s.io/v1" || answer.Kind != "AdmissionReview" || answer.Response == nil {
		t.Fatalf("answer %+v is not a v1 AdmissionReview with a response", answer)
	}
	if r := answer.Response; r.UID != sent.UID || !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch ||
		!strings.Contains(string(r.Patch), `"path":"/metadata/labels/agents.kruise.io~1state"`) {
		t.Errorf("response %+v: want the request's UID, allowed, and the handler's JSON patch", r)
	}

	for _, tc := range []struct {
		name, contentType string
		body              []byte
		want              string
	}{
		{"no body", "application/json", nil, "request body is empty"},
		{"not JSON", "application/json", []byte("{"), "decoding the AdmissionReview"},
		{"another content type", "application/yaml", body, "expected application/json"},
		{"no request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), "has no request"},
		{"an object that is not a Pod", "application/json", []byte(`{"request":{"uid":"1","object":{"spec":"x"}}}`), "decoding the AdmissionReview"},
		{"too large", "application/json", append(body, bytes.Repeat([]byte(" "), maxReviewSize)...), "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := serve(t, h, tc.contentType, tc.body).Response
			if r == nil || r.Allowed || r.Result == nil || r.Result.Code != http.StatusBadRequest || !strings.Contains(r.Result.Message, tc.want) {
				t.Errorf("response %+v: want a 400 refusal saying %q", r, tc.want)
			}
		})
	}
}

func serve(t *testing.T, h http.Handler, contentType string, body []byte) admissionv1.AdmissionReview {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mutate--v1-pod", bytes.NewReader(body))
	if body == nil {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("answered with Content-Type %q", ct)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		t.Fatalf("the answer %q is not an AdmissionReview: %v", rec.Body.String(), err)
	}
	return review
}

// reviewPod is a pool Pod as an AdmissionReview carries it: managed
// fields and status included.
func reviewPod(claimedBy string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-abc", Namespace: "ns", ResourceVersion: "42",
			Labels:            map[string]string{"agents.kruise.io/sandboxset": "demo", "agents.kruise.io/claimed-by": claimedBy},
			CreationTimestamp: metav1.Unix(1_700_000_000, 0),
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "manager", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:agents.kruise.io/sandboxset":{}},"f:ownerReferences":{}},"f:spec":{"f:containers":{"k:{\"name\":\"sandbox\"}":{".":{},"f:image":{},"f:name":{},"f:resources":{}}}}}`)}},
				{Manager: "kwok", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:status":{},"f:type":{}}},"f:phase":{},"f:podIP":{}}}`)}},
			},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7", Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Unix(1_700_000_001, 0)},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Unix(1_700_000_100, 0)},
		}},
	}
}

// claimReview is an agent's claim as the API server sends it to the Pod
// webhook, and its body.
func claimReview(tb testing.TB) (admissionv1.AdmissionRequest, []byte) {
	raw := func(p *corev1.Pod) runtime.RawExtension {
		b, err := json.Marshal(p)
		if err != nil {
			tb.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	sent := admissionv1.AdmissionRequest{
		UID: "7f8e", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Name: "demo-abc", Namespace: "ns", Operation: admissionv1.Update, DryRun: ptr.To(true),
		UserInfo: authenticationv1.UserInfo{Username: "system:serviceaccount:ns:agent", Groups: []string{"system:serviceaccounts"}},
		Object:   raw(reviewPod("agent-1")), OldObject: raw(reviewPod("")),
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: &sent})
	if err != nil {
		tb.Fatal(err)
	}
	return sent, body
}

// BenchmarkPodReview serves a claim's review through controller-runtime's
// handler, decoding its Pods as the Pod webhook did, and through
// podReviews.
func BenchmarkPodReview(b *testing.B) {
	_, body := claimReview(b)
	decoder := admission.NewDecoder(clientgoscheme.Scheme)
	w := &PodWebhook{decoder: decoder}
	decodeBoth := admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		if _, err := w.decodedPod(req.Object); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if _, err := w.decodedPod(req.OldObject); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		return admission.Allowed("")
	})
	for name, h := range map[string]http.Handler{
		"controller-runtime": &admission.Webhook{Handler: decodeBoth},
		"podReviews":         podReviews{log: logr.Discard(), webhook: &admission.Webhook{Handler: decodeBoth}},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/mutate--v1-pod", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if !strings.Contains(rec.Body.String(), `"allowed":true`) {
					b.Fatalf("answer %s", rec.Body.String())
				}
			}
		})
	}
}
