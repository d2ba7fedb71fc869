// Package deploy holds Parley's Kubernetes manifests (Kustomize, under k8s/)
// and the offline test that validates them: CI has neither a cluster nor
// kubectl, so the test builds every overlay in-process and decodes each object
// strictly into its Kubernetes type.
package deploy
