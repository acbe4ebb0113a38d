package v1alpha1

import (
	"encoding/json"
	"hash/fnv"
	"strconv"

	"k8s.io/apimachinery/pkg/util/rand"
)

// Revision returns the short hash of the template and persistentContents
// that names a pool's revision, in the style of pod-template-hash
// (e.g. "78dd8599cf"). Equal specs give equal revisions; replicas and the
// update strategy do not take part.
func (s *SandboxSetSpec) Revision() string {
	hasher := fnv.New32a()
	// json.Marshal of these types cannot fail: no channels, funcs or cycles.
	data, _ := json.Marshal(struct {
		Template           any                 `json:"template"`
		PersistentContents []PersistentContent `json:"persistentContents,omitempty"`
	}{s.Template, s.PersistentContents})
	_, _ = hasher.Write(data)
	return rand.SafeEncodeString(strconv.FormatUint(uint64(hasher.Sum32()), 10))
}
