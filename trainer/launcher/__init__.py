"""The in-pod launcher (`incv4 launch`): msrun's job from Volcano's environment, supervision, compile sharing."""
