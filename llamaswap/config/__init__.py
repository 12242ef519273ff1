"""
Configuration: YAML sources to immutable, validated objects.
"""
