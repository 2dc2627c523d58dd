"""Actuation: making the cluster do what the plan says, safely.

The planner decides; this layer acts, with its own safety rules and its
state kept in the cluster, so that a restart or a leader change resumes
where the last one stopped. It is built like the descheduler and
Karpenter's disruption controller (`descheduler/pkg/descheduler/evictions`,
Karpenter's `disruption`): strategies decide *what* should change, one
filter decides *whether* a pod may be evicted at all, one evictor does the
evictions within budgets, and a node's power state is a small state machine
whose state lives on the Node.

==================  ===========================================================
module              concern
==================  ===========================================================
``objects``         what this layer reads and writes on API objects: pod and
                    node facts, the annotations and taints it owns
``evictor``         whether a pod may be evicted (`EvictionFilter`) and doing
                    it (`PodEvictor`: Eviction API, budgets, Events, dry run)
``rebalance``       which running pods to move so that the cluster follows the
                    plan, and whether each move pays (`plan_moves`)
``history``         the moves made recently (hysteresis), kept in a ConfigMap
``drivers``         powering machines on and off: Redfish, IPMI, Wake-on-LAN,
                    kwok (the test cluster), behind one small interface
``power``           the node power lifecycle: on -> draining -> powering-off ->
                    off -> waking -> on, its safety rules and wake on pending
``metrics``         the planner's and the actuation's Prometheus metrics
``events``          Events on pods and nodes
==================  ===========================================================

Nothing here plans: every decision starts from a published plan document
(`edgeplace.k8s.extender.table`) and the cluster's objects; every figure of
grams or kWh comes from `edgeplace.policies.evaluate`.
"""
