"""audit: does the trained model give away what it was trained on? (`selfsup audit WORKDIR`)

    canaries   random secrets planted by ingest, their exposure after training (The Secret Sharer)
    windows    training and held-out token windows: random, most duplicated, next to PII
    scoring    one teacher-forced pass per window: log-probabilities, greedy hits, the vocabulary's
               mean and spread (what extraction and membership inference read); for a masked LM,
               pseudo-log-likelihood (each token scored with itself masked)
    extraction whether greedy decoding reproduces a window's suffix (Carlini et al. 2022)
    membership loss, zlib, Min-K%, Min-K%++ and reference-model attacks: AUC, TPR at 1% FPR
    regurgitation  sampled text → the ingest PII detectors → found verbatim in the raw sources?
    verdicts   PASS / WARN / FAIL per test, with the threshold and the paper behind it
    run        the stage: all of the above → WORKDIR/audit.json
"""
