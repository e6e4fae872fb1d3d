// Package bustest is the contract suite of the bus interfaces: Run checks every promise of bus.Bus against one backend,
// the same inputs for every backend and the same outputs expected, as each backend's tests call it (the memory backend
// in package bus_test, the NATS backends in natsbus). A backend describes itself with a Contract: how to build a bus,
// and the few promises in which backends differ.
//
// The suite uses only the exported API, and reads deliveries as the SSE writer does: woken through
// Subscription.SetNotify alone (WakeUp checks exactly that). Its helpers (Next, Subscribe, PublishEvent, …) are for
// other tests of buses too.
package bustest
