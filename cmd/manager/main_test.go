package main

import (
	"strings"
	"testing"
)

func TestCheckIdentity(t *testing.T) {
	for _, tc := range []struct {
		username    string
		anyIdentity bool
		wantErr     string
	}{
		{username: "system:serviceaccount:sandboxset-system:sandboxset-controller-manager"},
		{username: "kubernetes-admin", wantErr: `the manager runs as "kubernetes-admin", which is not a ServiceAccount`},
		{username: "system:serviceaccountx", wantErr: "--allow-non-serviceaccount-identity"},
		{username: "kubernetes-admin", anyIdentity: true},
	} {
		err := checkIdentity(tc.username, tc.anyIdentity)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkIdentity(%q, %v) = %v, want nil", tc.username, tc.anyIdentity, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkIdentity(%q, %v) = %v, want an error containing %q", tc.username, tc.anyIdentity, err, tc.wantErr)
		}
	}
}

func TestValidateAdmissionParams(t *testing.T) {
	o := options{admissionParams: "sandboxset-system"}
	o.controller.Workers, o.controller.PodWriteParallelism, o.controller.ExpectationTTL = 1, 1, 1
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), `--admission-params: "sandboxset-system" is not namespace/name`) {
		t.Errorf("validate() = %v, want the --admission-params refusal", err)
	}
	o.admissionParams = "sandboxset-system/sandboxset-admission-params"
	if err := o.validate(); err != nil {
		t.Errorf("validate() = %v, want nil", err)
	}
}
