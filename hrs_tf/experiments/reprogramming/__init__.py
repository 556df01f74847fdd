"""Adversarial reprogramming of a frozen, optionally defended target (HRS paper section 7, appendix E): the input
transform (:mod:`.transform`), resumable training (:mod:`.train`), a run as one cell of any executor
(:mod:`.run`) and the report (:mod:`.report`)."""
