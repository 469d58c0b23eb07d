"""Scale-out on Ray (docs/cluster.md): render workers as Ray actors, and a front door that places sessions.

* ``bridge.cluster.worker``: a worker is the existing server (``bridge.server.Server``) hosting N sessions, run inside
  a Ray actor with declared resources; it reports its load and keeps a copy of each session's style state.
* ``bridge.cluster.frontdoor``: the well-known endpoint engines connect to. It places a HELLO on the least-loaded
  live worker whose renderer the engine can feed and answers with a WELCOME ``redirect`` (protocol section 5.10), so
  frames go straight from the engine to its worker; Ray places, supervises and scales workers and never carries a
  frame. An engine that does not follow redirects is relayed by the front door (the old behaviour, one more hop).
* ``bridge.cluster.placement``: the placement and scaling rules, plain Python (no Ray), so they are testable alone.
"""
