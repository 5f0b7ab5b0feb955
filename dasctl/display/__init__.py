"""Progress renderers: what a person sees while sessions run (the only core code that may import rich).

- `register`: the live VAD bar of one register/verify session, plain status lines, none.
- `watch`: the batch view of `dasctl watch`.
- `reenroll`: the batch bar of `dasctl reenroll`.
"""
