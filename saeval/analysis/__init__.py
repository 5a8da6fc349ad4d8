"""Reading results and reporting them: statistics, comparisons, sweeps, rendering (no torch)."""
