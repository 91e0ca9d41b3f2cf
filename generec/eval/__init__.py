"""Full-ranking evaluation shared by every model (through the model seam only)."""
