"""Pictures: image panels, depth/error/normal maps, and plots of samples along rays."""
