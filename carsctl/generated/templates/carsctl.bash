#% Template of the bash completion script (bash 4+, with or without the bash-completion package).
#% carsctl/generated/completion_scripts.py fills it in; `carsctl completion generate` writes it to
#% completions/carsctl.bash. tests/carsctl/test_completion_shells.py runs shellcheck on it and its output.
#% A line `# @NAME@` is a slot, replaced by its text: HEADER (header.txt), TABLES (tables.sh) and
#% CMD_CASES, OPT_CASES, ARG_CASES (the command tree as case tables). `#%` lines, like these, are dropped.
# @HEADER@

# _carsctl_cmd PATH: the subcommands and options of a command path.
# @TABLES@

# The state directory: $CARSCTL_HOME, else a CARSCTL_HOME= line of ./.env, else ./.carsctl.
_carsctl_home() {
    _cc_home=${CARSCTL_HOME-}
    if [[ -z $_cc_home && -f .env && -r .env ]]; then
        local line
        while IFS= read -r line || [[ -n $line ]]; do
            line=${line#"${line%%[![:space:]]*}"}
            line=${line#export }
            if [[ $line =~ ^CARSCTL_HOME[[:space:]]*= ]]; then
                line=${line#*=}
                line=${line#"${line%%[![:space:]]*}"}
                line=${line%"${line##*[![:space:]]}"}
                case $line in
                    \"*\") line=${line:1:${#line}-2} ;;
                    \'*\') line=${line:1:${#line}-2} ;;
                    *) line=${line%%[[:space:]]#*} ;;
                esac
                _cc_home=$line
            fi
        done < .env
    fi
    _cc_home=${_cc_home:-.carsctl}
    [[ $_cc_home == \~/* ]] && _cc_home=$HOME/${_cc_home#\~/}
}

# Task aliases and names from the cache; when it is missing, `carsctl completion refresh --quiet`
# writes it (once per shell and state directory; it imports no Celery and touches no network).
_carsctl_tasks() {
    local file=$_cc_home/completion/tasks line
    if [[ ! -f $file && ${_carsctl_refreshed-} != "$_cc_home" ]]; then
        _carsctl_refreshed=$_cc_home
        if type -P carsctl >/dev/null 2>&1; then
            CARSCTL_HOME=$_cc_home command carsctl completion refresh --quiet </dev/null >/dev/null 2>&1
        fi
    fi
    [[ -f $file && -r $file ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        [[ -n $line ]] && _cc_dyn+=("$line")
    done < "$file"
}

# Worker node names: the names of $CARSCTL_HOME/nodes/<name>.json whose "kind" is worker (the default);
# beat and the monitor have state files there too.
_carsctl_nodes() {
    local file name line kind restore=
    shopt -q failglob && { restore=1; shopt -u failglob; }
    for file in "$_cc_home"/nodes/*.json; do
        [[ -f $file && -r $file ]] || continue
        kind=worker
        while IFS= read -r line; do
            if [[ $line == *'"kind"'* ]]; then
                line=${line#*'"kind"'}
                line=${line#*'"'}
                kind=${line%%'"'*}
                break
            fi
        done < "$file"
        [[ $kind == worker ]] || continue
        name=${file##*/}
        _cc_dyn+=("${name%.json}")
    done
    [[ -n $restore ]] && shopt -s failglob
    return 0
}

# _carsctl_values CURRENT [PREFIX]: the candidates of the value spec in _cc_val.
_carsctl_values() {
    local cur=$1 pre=${2-} word
    local -a _cc_dyn=()
    case ${_cc_val[0]} in
        f) compopt -o filenames -o default 2>/dev/null; return 0 ;;
        d) compopt -o dirnames 2>/dev/null; return 0 ;;
        t) _carsctl_home; _carsctl_tasks ;;
        n) _carsctl_home; _carsctl_nodes ;;
        -) return 0 ;;
    esac
    for word in "${_cc_val[@]:1}" "${_cc_dyn[@]}"; do
        [[ $word == "$cur"* && " ${COMPREPLY[*]} " != *" $pre$word "* ]] && COMPREPLY+=("$pre$word")
    done
    return 0
}

_carsctl_words() {
    local cur=$1 word
    shift
    for word; do
        [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
    done
    return 0
}

_carsctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmdpath='' word i=1 n=0 skip=0 ddash=0
    local -a _cc_subs=() _cc_opts=() _cc_val=()
    local _cc_nargs=0 _cc_home=
    COMPREPLY=()
    _carsctl_cmd ''
    while (( i < COMP_CWORD )); do
        word=${COMP_WORDS[i]}
        (( i++ ))
        # `--opt=value` reaches us as `--opt`, `=`, `value` (= is in COMP_WORDBREAKS).
        [[ $word == = ]] && continue
        if (( skip > 0 )); then
            (( skip-- ))
            continue
        fi
        if (( ddash )); then
            (( n++ ))
            continue
        fi
        case $word in
            --) ddash=1 ;;
            -*=*) ;;
            -?*) _carsctl_optval "$cmdpath" "$word" && skip=$_cc_nargs ;;
            *)
                if [[ " ${_cc_subs[*]} " == *" $word "* ]]; then
                    cmdpath=${cmdpath:+$cmdpath }$word
                    _carsctl_cmd "$cmdpath"
                    n=0
                else
                    (( n++ ))
                fi
                ;;
        esac
    done
    [[ $cur == = ]] && cur=
    if (( skip > 0 )); then
        _carsctl_values "$cur"
    elif [[ $cur == -* ]] && (( ! ddash )); then
        if [[ $cur == --*=* ]] && _carsctl_optval "$cmdpath" "${cur%%=*}"; then
            _carsctl_values "${cur#*=}" "${cur%%=*}="
        else
            _carsctl_words "$cur" "${_cc_opts[@]}"
        fi
    elif (( ${#_cc_subs[@]} )); then
        _carsctl_words "$cur" "${_cc_subs[@]}"
    elif _carsctl_argval "$cmdpath" $(( n + 1 )); then
        _carsctl_values "$cur"
    elif (( ! ddash )); then
        _carsctl_words "$cur" "${_cc_opts[@]}"
    fi
    return 0
}

complete -F _carsctl carsctl
