package certmanager

import (
	"context"
	"fmt"

	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
)

// Renew asks cert-manager to re-issue a Certificate now, the way `cmctl
// renew` does: by setting its Issuing condition, which the issuing
// controllers act on. A renewal asked for while the Certificate is still
// issuing is absorbed by that issuance: wait for Issued first.
func Renew(ctx context.Context, c client.Client, key client.ObjectKey) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crt := &cmapi.Certificate{}
		if err := c.Get(ctx, key, crt); err != nil {
			return err
		}
		apiutil.SetCertificateCondition(crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
			"ManuallyTriggered", "Certificate re-issuance manually triggered")
		return c.Status().Update(ctx, crt)
	})
	if err != nil {
		return fmt.Errorf("triggering renewal of Certificate %s: %w", key, err)
	}
	return nil
}

// Issued says whether a Certificate is Ready for its current generation and
// no longer issuing: its Secret holds what it asked for.
func Issued(crt *cmapi.Certificate) bool {
	ready := apiutil.GetCertificateCondition(crt, cmapi.CertificateConditionReady)
	issuing := apiutil.GetCertificateCondition(crt, cmapi.CertificateConditionIssuing)
	return ready != nil && ready.Status == cmmeta.ConditionTrue && ready.ObservedGeneration == crt.Generation &&
		(issuing == nil || issuing.Status != cmmeta.ConditionTrue)
}
