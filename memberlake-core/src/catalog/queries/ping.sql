-- Readiness: the control plane answers.
SELECT 1
