(function(){
  var q=document.getElementById('q'),sev=document.getElementById('f-sev'),
      rule=document.getElementById('f-rule'),app=document.getElementById('f-app'),
      dev=document.getElementById('f-device'),
      shown=document.getElementById('shown'),table=document.getElementById('violations');
  if(!table){return;}
  var rows=table.tBodies[0].rows,text=null;
  function apply(){
    if(text===null){text=[];for(var i=0;i<rows.length;i++){
      text.push(rows[i].textContent.toLowerCase());}}
    var t=q.value.trim().toLowerCase(),s=sev.value,r=rule.value,a=app.value,v=dev.value,n=0;
    for(var i=0;i<rows.length;i++){
      var d=rows[i].dataset;
      var ok=(!s||d.sev===s)&&(!r||d.rule===r)&&(!a||d.app===a)&&(!v||d.device===v)&&
        (!t||text[i].indexOf(t)>=0);
      rows[i].style.display=ok?'':'none';if(ok){n++;}
    }
    shown.textContent=n;
  }
  // A link can carry a filter: report.html#rule=domain.not_listed&sev=error&device=10.0.0.5
  var given={};
  location.hash.replace(/^#/,'').split('&').forEach(function(kv){
    var i=kv.indexOf('=');if(i>0){given[kv.slice(0,i)]=decodeURIComponent(kv.slice(i+1));}
  });
  if(given.q){q.value=given.q;}if(given.sev){sev.value=given.sev;}
  if(given.rule){rule.value=given.rule;}if(given.app){app.value=given.app;}
  if(given.device){dev.value=given.device;}
  if(given.q||given.sev||given.rule||given.app||given.device){apply();}
  var timer=null;
  q.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(apply,120);});
  [sev,rule,app,dev].forEach(function(el){el.addEventListener('change',apply);});
  document.querySelectorAll('[data-filter-rule]').forEach(function(el){
    el.addEventListener('click',function(ev){ev.preventDefault();
      rule.value=el.getAttribute('data-filter-rule');apply();
      table.scrollIntoView();});
  });
  document.querySelectorAll('[data-filter-device]').forEach(function(el){
    el.addEventListener('click',function(ev){ev.preventDefault();
      dev.value=el.getAttribute('data-filter-device');apply();
      table.scrollIntoView();});
  });
})();
