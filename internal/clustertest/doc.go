// Package clustertest holds the tests of Amtsbote on a three-node
// JetStream cluster: stream leaders shut down under load, role processes
// killed and restarted, and the database cut off for a while. Each counts
// what reached the authority's sink and what EVENTS and the store hold.
package clustertest
