#compdef pocketsr

_pocketsr_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _POCKETSR_COMPLETE=complete_zsh pocketsr)
}

compdef _pocketsr_completion pocketsr
