package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"
)

// maxReviewSize bounds a review's body, as controller-runtime's handler does.
const maxReviewSize = 7 << 20

// podReviews serves the Pod webhook's AdmissionReviews. Every claim and
// every replacement passes through it, and controller-runtime's handler
// reads a review's Pods four or five times over: it scans the review for
// its kind, decodes it with the Pods' bytes copied out, then the Pod
// webhook scans each Pod for its kind and decodes it. In a profile of
// sustained claims that was a fifth of the manager's CPU. podReviews
// decodes the review and its Pods in one pass, and leaves the rest
// (panics, logging, the patch) to the admission.Webhook it wraps.
type podReviews struct {
	webhook *admission.Webhook
	log     logr.Logger
}

// podReview is an AdmissionReview whose objects are Pods: the typed
// fields are shallower than the embedded request's, so they take the
// objects' JSON.
type podReview struct {
	Request *struct {
		admissionv1.AdmissionRequest
		Object    *corev1.Pod `json:"object,omitempty"`
		OldObject *corev1.Pod `json:"oldObject,omitempty"`
	} `json:"request,omitempty"`
}

func (h podReviews) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readPodReview(r)
	if err != nil {
		h.log.Error(err, "Refusing a malformed AdmissionReview")
		h.write(w, admission.Errored(http.StatusBadRequest, err))
		return
	}
	h.write(w, h.webhook.Handle(r.Context(), req))
}

func readPodReview(r *http.Request) (admission.Request, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return admission.Request{}, errors.New("request body is empty")
	}
	defer r.Body.Close()
	if contentType := r.Header.Get("Content-Type"); contentType != "application/json" {
		return admission.Request{}, fmt.Errorf("contentType=%s, expected application/json", contentType)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewSize+1))
	if err != nil {
		return admission.Request{}, fmt.Errorf("reading the AdmissionReview: %w", err)
	}
	if len(body) > maxReviewSize {
		return admission.Request{}, fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewSize)
	}
	var review podReview
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return admission.Request{}, fmt.Errorf("decoding the AdmissionReview: %w", err)
	}
	if review.Request == nil {
		return admission.Request{}, errors.New("the AdmissionReview has no request")
	}
	req := admission.Request{AdmissionRequest: review.Request.AdmissionRequest}
	if review.Request.Object != nil {
		req.Object = runtime.RawExtension{Object: review.Request.Object}
	}
	if review.Request.OldObject != nil {
		req.OldObject = runtime.RawExtension{Object: review.Request.OldObject}
	}
	return req, nil
}

func (h podReviews) write(w http.ResponseWriter, resp admission.Response) {
	w.Header().Set("Content-Type", "application/json")
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: &resp.AdmissionResponse,
	}
	if err := json.NewEncoder(w).Encode(review); err != nil {
		h.log.Error(err, "Writing the AdmissionReview's response")
	}
}

// decodedPod is the Pod a review carries, decoded already by podReviews,
// or else decoded from its bytes.
func (w *PodWebhook) decodedPod(raw runtime.RawExtension) (*corev1.Pod, error) {
	if pod, ok := raw.Object.(*corev1.Pod); ok {
		return pod, nil
	}
	pod := &corev1.Pod{}
	if err := w.decoder.DecodeRaw(raw, pod); err != nil {
		return nil, err
	}
	return pod, nil
}
