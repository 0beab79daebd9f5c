"""The Streamlit UI over the pipeline library."""
