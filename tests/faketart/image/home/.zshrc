# The rig's guest: an interactive zsh reads this (and does not start zsh-newuser-install).
