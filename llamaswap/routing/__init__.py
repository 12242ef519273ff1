"""
Deciding which upstreams run: scheduling, group rules and the matrix solver.
"""
