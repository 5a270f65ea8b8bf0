"""Checking a composed config before any work; the OmegaConf resolvers the configs use."""
