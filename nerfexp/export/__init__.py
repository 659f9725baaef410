"""Export of trained runs: meshes (marching cubes) and their renders, render-path videos."""
