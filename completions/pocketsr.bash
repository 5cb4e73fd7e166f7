# bash completion for pocketsr: on every Tab, pocketsr itself lists the candidates.
#
# Typer's generated script, with one change: bash splits words at ':' (COMP_WORDBREAKS),
# so `--device cuda:1` reaches a completion function as three words.  Here the words are
# taken from the command line up to the cursor, split at blanks only, and the part of
# each candidate up to the last ':' (which bash keeps as its own words) is trimmed off
# (candidates that do not start with it are dropped).
_pocketsr_completion() {
    local IFS=$'\n'
    local line="${COMP_LINE:0:COMP_POINT}"
    local -a words
    IFS=$' \t\n' read -r -a words <<< "$line"
    local cword=$(( ${#words[@]} - 1 ))
    [[ -z "$line" || "$line" =~ [[:space:]]$ ]] && cword=${#words[@]}
    COMPREPLY=( $( env COMP_WORDS="$line" \
                   COMP_CWORD=$cword \
                   _POCKETSR_COMPLETE=complete_bash $1 ) )
    local current="${words[cword]}"
    if [[ "$current" == *:* && "$COMP_WORDBREAKS" == *:* ]]; then
        local kept="${current%"${current##*:}"}"
        local -a trimmed=()
        local candidate
        for candidate in "${COMPREPLY[@]}"; do
            [[ "$candidate" == "$kept"* ]] && trimmed+=("${candidate#"$kept"}")
        done
        COMPREPLY=("${trimmed[@]}")
    fi
    return 0
}

complete -o default -F _pocketsr_completion pocketsr
