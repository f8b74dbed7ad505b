// Package multicluster holds the k8s module's end-to-end test: three real
// control planes, three controller-runtime managers beside three raftelect
// nodes, one leader through the raftelect resource lock. It has no API of
// its own.
package multicluster
