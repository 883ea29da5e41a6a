"""Calibrate before trusting: replay labelled past alerts and measure the decisions."""
