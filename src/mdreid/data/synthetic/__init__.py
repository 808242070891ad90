"""The synthetic tri-modal benchmark generator: procedural identities rendered as pixel-aligned RGB/NIR/TIR
triplets, written in each real benchmark's layout (:mod:`.generate`), plus the RGB-only pool of other
identities that pretrains the proxy-foundation backbone (:mod:`.pool`).

Module order follows the data: streams -> primitives -> shapes -> appearance -> cameras -> rendering ->
layouts -> generate / pool.
"""
