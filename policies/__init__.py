"""What "good" means: the power and carbon model, the evaluation, the cost
model the optimizer minimises, and the baseline policies users compare
against. Imports topology only."""
