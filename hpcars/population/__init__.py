"""Population search on top of ARS: M learners trained side by side.

Every member is an ARS learner with its own noise stream (the member index is part
of the direction key) and its own α and ν. Per iteration the trainer scores all
2N·M branches (spread over the ranks in fixed-size batched calls) and all-gathers
one row of scalars per branch, exactly as for a single learner; everything below
is computed identically on every rank from those scalars, so members never travel:
every rank holds all M parameter vectors, and a clone is a local row copy.

A member's *fitness* at iteration j is the mean reward of its 2N branches — the
antithetic estimate of the ν-smoothed objective at its parameters (−mini-batch
loss for supervised tasks, mean episode return for RL). It costs no extra
evaluation, so a population run uses exactly 2N·M training evaluations per
iteration whichever operators are on — but annealing, whose judge adds 2J per
member (``judge``), counted as training evaluations.

One iteration, for every member m (each operator is optional; see its module):

1. ``annealing`` — judge the step taken last iteration, old and new parameters
   scored on the same mini-batch or episode seeds: a worsening of Δ (in units of
   the member's reward standard deviation) is kept with probability exp(−Δ/T_j),
   else the member goes back to where it was and skips this step.
2. the ARS step Δθ_m (Algorithm 2 of the paper, the member's own α and ν).
3. ``swarm`` — particle-swarm velocity: v ← w·v + Δθ + c₁r₁(p_m − θ_m) + c₂r₂(g − θ_m).
4. θ_m ← θ_m + v (or + Δθ without the swarm).
5. ``repulsion`` — members crowding the population best (closer than a fraction of
   the way it has come from θ0) are pushed out.
6. ``truncation`` — every ``generation_every`` iterations the worst
   ``kill_fraction`` become clones of the best (PBT-style ×0.8/×1.2 of α and ν
   optional).

Random decisions (acceptance, a clone's parent, r₁, r₂, PBT factors) use
``agreed.uniforms``: counter-based, the same on every rank, no messages.
"""
